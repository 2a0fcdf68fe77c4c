// PostgreSQL as the local platform runs it, from the StatefulSet's container mapped to a process: the
// image's entrypoint (initdb on an empty PGDATA, then the server, then POSTGRES_DB), with every
// connection authenticated, the socket included. On a cluster only the pod reaches its socket volume;
// here the socket directory is on a machine shared with other users, so it is made owner-only and the
// socket asks for the password like TCP does.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import type { ContainerLimits } from "./cgroups";
import type { DiskLimits } from "./eviction";
import type { Owner } from "./layout";
import type { ProcessSpec } from "./mapping";
import { Managed, Supervisor, tail, waitUntil } from "./supervisor";
import { postgresCreateDatabase, postgresInitdb, postgresServer, requirePasswordAuth } from "./workloads";

export interface LocalPostgresOptions {
    /** The StatefulSet's name (the initdb and createdb logs are named after it). */
    name: string;
    /** The container as a process (containerProcess): PGDATA, POSTGRES_USER, POSTGRES_PASSWORD_FILE, POSTGRES_DB. */
    spec: ProcessSpec;
    /** The Service's loopback port. */
    port: number;
    /** The local stand-in of the image's socket volume (/var/run/postgresql). */
    socketDir: string;
    pgBin: string;
    supervisor: Supervisor;
    /** The user PostgreSQL runs as when the launcher is root (Debian's `postgres`). */
    owner?: Owner;
    graceMs?: number;
    /** The container's limits (the server runs under them; initdb and createdb are the launcher's own steps). */
    limits?: ContainerLimits;
    /** The pod's emptyDirs and ephemeral-storage limit (./eviction.ts). */
    disk?: DiskLimits;
    /** The container's preStop exec command. */
    preStop?: string[];
    log?: (line: string) => void;
    signal?: AbortSignal;
}

export interface LocalPostgres {
    process: Managed;
    /** libpq env of a client on loopback (TCP, the password). */
    database: Record<string, string>;
}

/**
 * What the image's entrypoint does before the server: the socket directory made owner-only, initdb on
 * an empty PGDATA, and the pg_hba.conf of an earlier version's data directory made to ask for passwords.
 */
export async function initPostgres(o: Pick<LocalPostgresOptions, "name" | "spec" | "socketDir" | "pgBin" | "supervisor" | "owner" | "log">): Promise<void> {
    const { spec, owner } = o;
    const log = o.log ?? (() => {});
    const id = owner ? { uid: owner.uid, gid: owner.gid } : {};
    // The socket's directory: only PostgreSQL's user (and root) may enter it.
    if (owner) fs.chownSync(o.socketDir, owner.uid, owner.gid);
    fs.chmodSync(o.socketDir, 0o700);
    if (!fs.existsSync(path.join(spec.env.PGDATA, "PG_VERSION"))) {
        log(`postgres: initialising ${spec.env.PGDATA}`);
        await o.supervisor.run(`${o.name}-initdb`, postgresInitdb(spec, o.pgBin), id);
    }
    // Before the server reads it: a data directory from an earlier version trusted the socket.
    if (hardenHba(path.join(spec.env.PGDATA, "pg_hba.conf"))) {
        log("postgres: pg_hba.conf trusted connections without a password (set up by an earlier version); they now need the password (scram-sha-256)");
    }
}

/** Once the server answers on `port`: POSTGRES_DB created if missing; returns a loopback client's libpq env. */
export async function createPostgresDatabase(o: Pick<LocalPostgresOptions, "name" | "spec" | "pgBin" | "supervisor" | "port">): Promise<Record<string, string>> {
    const password = fs.readFileSync(o.spec.env.POSTGRES_PASSWORD_FILE, "utf8");
    await o.supervisor.run(`${o.name}-createdb`, postgresCreateDatabase(o.spec, o.pgBin, o.port, password), { retries: 5 });
    return postgresClientEnv(o.spec, o.pgBin, o.port, password);
}

/** libpq env of a client on loopback: TCP to `port`, the password. */
export function postgresClientEnv(spec: ProcessSpec, pgBin: string, port: number, password: string): Record<string, string> {
    return {
        PGHOST: "127.0.0.1",
        PGPORT: String(port),
        PGUSER: spec.env.POSTGRES_USER,
        PGDATABASE: spec.env.POSTGRES_DB,
        PGPASSWORD: password,
        PATH: `${pgBin}:/usr/bin:/bin`,
    };
}

export async function startLocalPostgres(o: LocalPostgresOptions): Promise<LocalPostgres> {
    const { spec, owner } = o;
    const id = owner ? { uid: owner.uid, gid: owner.gid } : {};
    await initPostgres(o);
    const managed = o.supervisor.start("postgres", postgresServer(spec, o.port, o.socketDir), {
        ...id,
        graceMs: o.graceMs,
        limits: o.limits,
        disk: o.disk,
        preStop: o.preStop ? { ...spec, argv: o.preStop } : undefined,
    });
    await waitForPostgres(o.pgBin, o.port, () => tail(managed.logFile), o.signal);
    return { process: managed, database: await createPostgresDatabase(o) };
}

/** Until the server answers on `port`, like the pod's probes: over TCP; pg_isready needs no password. */
export async function waitForPostgres(pgBin: string, port: number, describe: () => string = () => "", signal?: AbortSignal): Promise<void> {
    const isReady = path.join(pgBin, "pg_isready");
    await waitUntil("postgres", async () => spawnSync(isReady, ["-q", "-h", "127.0.0.1", "-p", String(port)]).status === 0, 120_000, describe, signal);
}

/**
 * Rewrites the `trust` lines of a pg_hba.conf to ask for the password (requirePasswordAuth), in place
 * by rename, keeping the file's owner and mode. Returns whether anything changed.
 */
export function hardenHba(file: string): boolean {
    const before = fs.readFileSync(file, "utf8");
    const after = requirePasswordAuth(before);
    if (after === before) return false;
    const st = fs.statSync(file);
    const tmp = `${file}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, after, { mode: st.mode & 0o777 });
    fs.chmodSync(tmp, st.mode & 0o777);
    fs.chownSync(tmp, st.uid, st.gid);
    fs.renameSync(tmp, file);
    return true;
}
