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

export async function startLocalPostgres(o: LocalPostgresOptions): Promise<LocalPostgres> {
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
    const managed = o.supervisor.start("postgres", postgresServer(spec, o.port, o.socketDir), {
        ...id,
        graceMs: o.graceMs,
        limits: o.limits,
        disk: o.disk,
        preStop: o.preStop ? { ...spec, argv: o.preStop } : undefined,
    });
    // Like the pod's probes: over TCP; pg_isready needs no password.
    const isReady = path.join(o.pgBin, "pg_isready");
    await waitUntil("postgres", async () => spawnSync(isReady, ["-q", "-h", "127.0.0.1", "-p", String(o.port)]).status === 0, 120_000, () => tail(managed.logFile), o.signal);
    const password = fs.readFileSync(spec.env.POSTGRES_PASSWORD_FILE, "utf8");
    await o.supervisor.run(`${o.name}-createdb`, postgresCreateDatabase(spec, o.pgBin, o.port, password), { retries: 5 });
    return {
        process: managed,
        database: {
            PGHOST: "127.0.0.1",
            PGPORT: String(o.port),
            PGUSER: spec.env.POSTGRES_USER,
            PGDATABASE: spec.env.POSTGRES_DB,
            PGPASSWORD: password,
            PATH: `${o.pgBin}:/usr/bin:/bin`,
        },
    };
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
