// PostgreSQL as `npm run local` runs it (scripts/local/postgres.ts), started for real on 127.0.0.1 with
// the installed PostgreSQL binaries: every connection needs the password, over the socket too; the
// socket's directory is owner-only; and a data directory an earlier version set up to trust the socket
// is fixed at the next start, with its data kept.
import assert from "assert/strict";
import { spawnSync, SpawnSyncReturns } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { freePort } from "../../scripts/lib/ports";
import type { ProcessSpec } from "../../scripts/local/mapping";
import { startLocalPostgres } from "../../scripts/local/postgres";
import { Supervisor } from "../../scripts/local/supervisor";
import { ensureLocalTools } from "../../scripts/local/tools";
import { postgresServer, requirePasswordAuth } from "../../scripts/local/workloads";
import { INSTALL_TIMEOUT_MS } from "../harness";

/** pg_hba.conf as `initdb --auth-local=trust --auth-host=scram-sha-256` (the earlier local tier) wrote it. */
const OLD_HBA = `# TYPE  DATABASE        USER            ADDRESS                 METHOD

# "local" is for Unix domain socket connections only
local   all             all                                     trust
# IPv4 local connections:
host    all             all             127.0.0.1/32            scram-sha-256
# IPv6 local connections:
host    all             all             ::1/128                 scram-sha-256
# Allow replication connections from localhost, by a user with the
# replication privilege.
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
`;

describe("npm run local: pg_hba.conf needs a password on every line", () => {
    it("rewrites the method of trust lines only, keeping everything else, and is idempotent", () => {
        const fixed = requirePasswordAuth(OLD_HBA);
        assert.doesNotMatch(fixed, /^[^#]*\btrust\b/m);
        assert.match(fixed, /^local {3}all {13}all {37}scram-sha-256$/m);
        assert.match(fixed, /^local {3}replication {5}all {37}scram-sha-256$/m);
        assert.equal(fixed.split("\n").length, OLD_HBA.split("\n").length);
        assert.equal(requirePasswordAuth(fixed), fixed);
        // Comments that mention trust stay as they are.
        assert.equal(requirePasswordAuth("# trust nobody\n"), "# trust nobody\n");
    });

    it("finds the method after an address, after a separate mask, and leaves a database named trust alone", () => {
        assert.equal(requirePasswordAuth("host all all 10.0.0.0/8 trust"), "host all all 10.0.0.0/8 scram-sha-256");
        assert.equal(requirePasswordAuth("hostssl all all 10.0.0.1 255.255.255.255 trust # one"), "hostssl all all 10.0.0.1 255.255.255.255 scram-sha-256 # one");
        assert.equal(requirePasswordAuth("host all all samenet trust"), "host all all samenet scram-sha-256");
        assert.equal(requirePasswordAuth("local trust all peer"), "local trust all peer");
        assert.equal(requirePasswordAuth("include_if_exists trust"), "include_if_exists trust");
    });
});

describe("npm run local: PostgreSQL accepts only authenticated connections", function () {
    this.timeout(120_000);
    const root = process.getuid?.() === 0;
    /** Debian's postgres user, which PostgreSQL runs as when the launcher is root. */
    const owner = root ? postgresUser() : undefined;
    let tmp: string;
    let pgBin: string;
    let sup: Supervisor;

    before(function () {
        this.timeout(INSTALL_TIMEOUT_MS);
        pgBin = ensureLocalTools(["apt"]).pgBin;
        tmp = fs.mkdtempSync(path.join(os.tmpdir(), "local-postgres-"));
        fs.chmodSync(tmp, 0o755); // the postgres user must reach its directories below
    });
    afterEach(async () => sup && (await sup.stopAll()));
    after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

    /** A pod's directories as the launcher lays them out (owner-owned), and the container as a process. */
    function pod(name: string) {
        const dir = path.join(tmp, name);
        const d = { data: path.join(dir, "data"), credentials: path.join(dir, "credentials"), run: path.join(dir, "run") };
        for (const x of Object.values(d)) fs.mkdirSync(x, { recursive: true, mode: 0o755 });
        const password = path.join(d.credentials, "password");
        fs.writeFileSync(password, "s3cret-Pa55", { mode: 0o440 });
        if (owner) for (const f of [dir, ...Object.values(d), password]) fs.chownSync(f, owner.uid, owner.gid);
        sup = new Supervisor(path.join(dir, "logs"), path.join(dir, "pids"));
        const spec: ProcessSpec = {
            argv: [path.join(pgBin, "postgres"), "-c", "fsync=on", "-c", "listen_addresses=*"],
            env: { PGDATA: path.join(d.data, "pgdata"), POSTGRES_USER: "mlflow", POSTGRES_DB: "mlflow", POSTGRES_PASSWORD_FILE: password, PATH: `${pgBin}:/usr/bin:/bin` },
            cwd: dir,
        };
        return { dir, ...d, spec };
    }

    /** psql on the socket (never prompting), as `user` (default: this process's). */
    function psqlSocket(socketDir: string, port: number, sql: string, opts: { password?: string; uid?: number; gid?: number; db?: string } = {}): SpawnSyncReturns<string> {
        const env: Record<string, string> = { PATH: "/usr/bin:/bin", ...(opts.password ? { PGPASSWORD: opts.password } : {}) };
        return spawnSync(path.join(pgBin, "psql"), ["-X", "-w", "-At", "-h", socketDir, "-p", String(port), "-U", "mlflow", "-d", opts.db ?? "mlflow", "-c", sql], {
            env,
            encoding: "utf8",
            cwd: "/",
            ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid } : {}),
        });
    }

    async function start(p: ReturnType<typeof pod>, port: number) {
        const logs: string[] = [];
        const pg = await startLocalPostgres({ name: "db", spec: p.spec, port, socketDir: p.run, pgBin, supervisor: sup, owner, graceMs: 20_000, log: (l) => logs.push(l) });
        return { pg, logs };
    }

    it("on a fresh data directory: the socket refuses a connection without the password and accepts one with it", async () => {
        const p = pod("fresh");
        const port = await freePort();
        const { pg } = await start(p, port);
        const hba = fs.readFileSync(path.join(p.spec.env.PGDATA, "pg_hba.conf"), "utf8");
        assert.doesNotMatch(hba, /^[^#]*\btrust\b/m, "no trust line");

        const refused = psqlSocket(p.run, port, "SELECT 1");
        assert.notEqual(refused.status, 0, `a socket connection without a password got in: ${refused.stdout}`);
        assert.match(refused.stderr, /password/i);
        if (owner) {
            const asOwner = psqlSocket(p.run, port, "SELECT 1", owner);
            assert.notEqual(asOwner.status, 0, "PostgreSQL's own user needs the password too");
            assert.match(asOwner.stderr, /password/i);
        }
        const ok = psqlSocket(p.run, port, "SELECT current_user", { password: "s3cret-Pa55" });
        assert.equal(ok.status, 0, ok.stderr);
        assert.equal(ok.stdout.trim(), "mlflow");
        // TCP, as every client of the platform connects.
        const tcp = spawnSync(path.join(pgBin, "psql"), ["-X", "-w", "-At", "-c", "SELECT 1"], { env: pg.database, encoding: "utf8" });
        assert.equal(tcp.status, 0, tcp.stderr);

        // The directory of the socket: PostgreSQL's user only.
        const st = fs.statSync(p.run);
        assert.equal(st.mode & 0o777, 0o700);
        assert.equal(st.uid, owner?.uid ?? process.getuid!());
        assert.equal(fs.statSync(path.join(p.run, `.s.PGSQL.${port}`)).mode & 0o777, 0o700);
    });

    it("keeps other local users out of the socket's directory", async function () {
        if (!root) this.skip(); // needs another user to run psql as
        const p = pod("others");
        const port = await freePort();
        await start(p, port);
        const nobody = passwdEntry("nobody");
        const r = psqlSocket(p.run, port, "SELECT 1", { password: "s3cret-Pa55", ...nobody });
        assert.notEqual(r.status, 0, "nobody reached the socket");
        assert.match(r.stderr, /Permission denied/);
    });

    it("fixes a data directory that trusted the socket (set up by an earlier version) at the next start, keeping its data", async () => {
        const p = pod("old");
        const port = await freePort();
        // What the launcher did before: initdb trusting the socket, then the server.
        const id = owner ? { uid: owner.uid, gid: owner.gid } : {};
        await sup.run("old-initdb", { ...p.spec, argv: [path.join(pgBin, "initdb"), `--pgdata=${p.spec.env.PGDATA}`, "--username=mlflow", `--pwfile=${p.spec.env.POSTGRES_PASSWORD_FILE}`, "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"] }, id);
        const hbaFile = path.join(p.spec.env.PGDATA, "pg_hba.conf");
        assert.match(fs.readFileSync(hbaFile, "utf8"), /^local\s+all\s+all\s+trust$/m);
        const old = sup.start("postgres", postgresServer(p.spec, port, p.run), { ...id, graceMs: 20_000 });
        for (let i = 0; i < 100 && spawnSync(path.join(pgBin, "pg_isready"), ["-q", "-h", "127.0.0.1", "-p", String(port)]).status !== 0; i++) await new Promise((r) => setTimeout(r, 100));
        const stored = psqlSocket(p.run, port, "CREATE DATABASE mlflow", { db: "postgres" });
        assert.equal(stored.status, 0, `the old setup let a socket connection in without a password: ${stored.stderr}`);
        const wrote = psqlSocket(p.run, port, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('a user''s run')");
        assert.equal(wrote.status, 0, wrote.stderr);
        await old.stop();
        const mode = fs.statSync(hbaFile).mode & 0o777;

        const { logs } = await start(p, port);
        assert.ok(logs.some((l) => /pg_hba\.conf trusted connections without a password/.test(l)), logs.join("\n"));
        const hba = fs.readFileSync(hbaFile, "utf8");
        assert.doesNotMatch(hba, /^[^#]*\btrust\b/m);
        assert.equal(fs.statSync(hbaFile).mode & 0o777, mode);
        assert.equal(fs.statSync(hbaFile).uid, owner?.uid ?? process.getuid!());
        const refused = psqlSocket(p.run, port, "SELECT v FROM kept");
        assert.notEqual(refused.status, 0, "the socket still trusts a connection without a password");
        const read = psqlSocket(p.run, port, "SELECT v FROM kept", { password: "s3cret-Pa55" });
        assert.equal(read.status, 0, read.stderr);
        assert.equal(read.stdout.trim(), "a user's run");
    });
});

function passwdEntry(name: string): { uid: number; gid: number } {
    const line = fs.readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith(`${name}:`));
    if (!line) throw new Error(`no ${name} user`);
    const [, , uid, gid] = line.split(":");
    return { uid: Number(uid), gid: Number(gid) };
}

function postgresUser(): { uid: number; gid: number } {
    return passwdEntry("postgres");
}
