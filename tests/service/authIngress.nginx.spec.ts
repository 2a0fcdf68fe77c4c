// Service tier: a real nginx enforces the htpasswd file the AuthIngress builds and the proxy settings
// its annotations ask of ingress-nginx, in front of a real upstream, all on 127.0.0.1.
import assert from "assert/strict";
import { spawnSync } from "child_process";
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { PASSWORD_LENGTH } from "../../components/authIngress";
import { htpasswdFile } from "../../components/authIngress/htpasswd";
import { EDGE_REFUSED_PATHS, ingressAnnotations, refusedAnnotations } from "../../components/authIngress/nginx";
import { nginxSizeValue } from "../../components/authIngress/schema";
import { installMocks, setStackConfig } from "../../scripts/lib/mockRuntime";
import { loadConfig } from "../../stacks/config";
import { ensureNginx, RunningNginx, RunningProcess, startEchoUpstream, startNginx } from "../../scripts/lib/nginx";

/** Passwords shaped like the generated ones (32 chars, letters, digits and -_.), plus a hand-made one with ':' and UTF-8. */
const generated = () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    return Array.from(randomBytes(PASSWORD_LENGTH), (b) => alphabet[b % alphabet.length]).join("");
};
const USERS: [string, string][] = [
    ["alice", generated()],
    ["bob.smith", generated()],
    ["carol", "pa:ss-wörd-0123456789"],
];
const seeds = Object.fromEntries(USERS.map(([u]) => [u, randomBytes(16).toString("hex")]));
/** The ingress slice of a development stack that sets nothing else: the platform's defaults, as `pulumi up` resolves them. */
let INGRESS: ReturnType<typeof loadConfig>["ingress"];
let ANNOTATIONS: Record<string, string>;

interface Response {
    status: number;
    headers: http.IncomingHttpHeaders;
    body: string;
}

function request(port: number, opts: { user?: string; password?: string; method?: string; body?: Buffer; path?: string; headers?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string | number> = { ...opts.headers };
    if (opts.user !== undefined) headers.authorization = `Basic ${Buffer.from(`${opts.user}:${opts.password}`, "utf8").toString("base64")}`;
    if (opts.body) headers["content-length"] = opts.body.length;
    return new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port, path: opts.path ?? "/api/2.0/mlflow/experiments/search", method: opts.method ?? "GET", headers, agent: false }, (res) => {
            let body = "";
            res.setEncoding("utf8");
            res.on("data", (c) => (body += c));
            res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        });
        req.on("error", reject);
        req.end(opts.body);
    });
}

/**
 * Sends only a request head declaring `length` body bytes; resolves with the status line nginx answers
 * with, or "no answer" if it says nothing within `waitMs` (it is waiting for the body).
 */
function statusForDeclaredLength(port: number, length: string, auth: string, waitMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
        const sock = net.connect(port, "127.0.0.1", () =>
            sock.write(`PUT /api/2.0/mlflow-artifacts/artifacts/1/model.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic ${auth}\r\nContent-Length: ${length}\r\n\r\n`),
        );
        let data = "";
        const done = (line: string) => {
            clearTimeout(timer);
            sock.destroy();
            resolve(line);
        };
        const timer = setTimeout(() => done("no answer"), waitMs);
        sock.setEncoding("utf8");
        sock.on("data", (d) => {
            data += d;
            if (data.includes("\r\n")) done(data.split("\r\n")[0]);
        });
        sock.on("error", (e) => {
            clearTimeout(timer);
            reject(e);
        });
    });
}

describe("AuthIngress htpasswd under a real nginx", function () {
    let nginx: RunningNginx | undefined;
    let upstream: RunningProcess | undefined;
    let file: string;

    before(async function () {
        await installMocks();
        setStackConfig({ development: true }); // the annotations are what the defaults give; TLS is the controller's
        INGRESS = loadConfig().ingress;
        ANNOTATIONS = ingressAnnotations(INGRESS, "mlflow-ingress-htpasswd");
        this.timeout(300_000); // first run installs nginx and apache2-utils from Debian
        ensureNginx();
        file = htpasswdFile(USERS, { saltSeeds: seeds });
        upstream = await startEchoUpstream();
        nginx = await startNginx({
            htpasswd: file,
            routes: [
                { ingress: "mlflow-ingress", path: "/", pathType: "Prefix", annotations: ANNOTATIONS, upstreamPort: upstream.port },
                ...EDGE_REFUSED_PATHS.map((r) => ({ ingress: "mlflow-ingress-refused", path: r.path, pathType: "Prefix" as const, annotations: refusedAnnotations(INGRESS), upstreamPort: upstream!.port })),
            ],
        });
    });

    after(async () => {
        await nginx?.stop();
        await upstream?.stop();
    });

    it("builds a file Apache's htpasswd verifies (htpasswd -vb)", () => {
        const htpasswdPath = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "htpasswd-")), "htpasswd");
        try {
            fs.writeFileSync(htpasswdPath, file, { mode: 0o600 });
            for (const [user, password] of USERS) {
                const ok = spawnSync("htpasswd", ["-vb", htpasswdPath, user, password], { encoding: "utf8" });
                assert.equal(ok.status, 0, `${user}: ${ok.stderr}`);
                const bad = spawnSync("htpasswd", ["-vb", htpasswdPath, user, `${password}x`], { encoding: "utf8" });
                assert.notEqual(bad.status, 0, `${user}: a wrong password must not verify`);
            }
        } finally {
            fs.rmSync(path.dirname(htpasswdPath), { recursive: true, force: true });
        }
    });

    it("runs nginx unprivileged with the Ingress's limits", () => {
        const conf = fs.readFileSync(path.join(nginx!.dir, "nginx.conf"), "utf8");
        assert.match(conf, new RegExp(`client_max_body_size ${INGRESS.proxyBodySize};`));
        assert.match(conf, /proxy_request_buffering off;/);
        assert.match(conf, /proxy_buffering off;/);
        assert.match(conf, new RegExp(`proxy_read_timeout ${INGRESS.proxyReadTimeoutSeconds}s;`));
        assert.doesNotMatch(conf, /^\s*user\s/m);
        const status = fs.readFileSync(`/proc/${nginx!.pid}/status`, "utf8");
        const uid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
        assert.notEqual(uid, 0, "nginx must not run as root");
    });

    for (const [user] of USERS) {
        it(`passes ${user} with the right password through to the upstream (200)`, async () => {
            const password = USERS.find(([u]) => u === user)![1];
            const res = await request(nginx!.port, { user, password });
            assert.equal(res.status, 200, res.body);
            assert.equal(res.headers["x-upstream"], "echo");
            const echo = JSON.parse(res.body);
            assert.equal(echo.url, "/api/2.0/mlflow/experiments/search");
            // nginx forwards Authorization: an MLflow app with its own basic auth would see these credentials.
            assert.equal(echo.authorization, true);
        });
    }

    it("refuses a wrong password (401)", async () => {
        const res = await request(nginx!.port, { user: "alice", password: `${USERS[0][1]}x` });
        assert.equal(res.status, 401);
        assert.equal(res.headers["x-upstream"], undefined, "the upstream must not be reached");
        const other = await request(nginx!.port, { user: "alice", password: USERS[1][1] });
        assert.equal(other.status, 401, "another user's password");
    });

    it("refuses a request without credentials (401) and names the realm", async () => {
        const res = await request(nginx!.port);
        assert.equal(res.status, 401);
        assert.equal(res.headers["www-authenticate"], `Basic realm="${INGRESS.realm}"`);
    });

    it("refuses an unknown user (401)", async () => {
        const res = await request(nginx!.port, { user: "mallory", password: USERS[0][1] });
        assert.equal(res.status, 401);
    });

    it("answers 403 on the refused paths and below them, with or without credentials, however the path is spelt", async () => {
        const alice = { user: "alice", password: USERS[0][1] };
        const paths = [
            ...EDGE_REFUSED_PATHS.map((r) => r.path),
            "/api/2.0/mlflow/webhooks/abc/test",
            "/ajax-api/2.0/mlflow/webhooks/abc",
            "//api/2.0/mlflow/webhooks",
            "/api/2.0/mlflow/%77ebhooks",
            "/api/2.0/mlflow/./webhooks/abc",
            "/api/2.0/x/../mlflow/webhooks",
            "/ajax-api/3.0/mlflow/assistant/chat",
        ];
        for (const path of paths) {
            for (const method of ["GET", "POST", "PATCH", "DELETE"]) {
                for (const creds of [{}, alice]) {
                    const res = await request(nginx!.port, { ...creds, method, path });
                    assert.equal(res.status, 403, `${method} ${path}`);
                    assert.equal(res.headers["x-upstream"], undefined, `${method} ${path} reached the upstream`);
                }
            }
        }
        // Whole path segments only, as ingress-nginx's Prefix: a sibling name is an ordinary path.
        assert.equal((await request(nginx!.port, { ...alice, path: "/api/2.0/mlflow/webhooks-archive" })).status, 200);
    });

    it("sends the upstream the client's address, not one the client claims (X-Forwarded-For)", async () => {
        const res = await request(nginx!.port, { user: "alice", password: USERS[0][1], headers: { "x-forwarded-for": "127.0.0.9", "x-real-ip": "127.0.0.9" } });
        assert.equal(res.status, 200);
        const echo = JSON.parse(res.body);
        assert.equal(echo.forwardedFor, "127.0.0.1");
        assert.equal(echo.realIp, "127.0.0.1");
    });

    it("streams a 64 MiB upload to the upstream (far above nginx's 1m default)", async () => {
        const body = Buffer.alloc(64 * 1024 * 1024, 7);
        const res = await request(nginx!.port, { user: "alice", password: USERS[0][1], method: "PUT", body });
        assert.equal(res.status, 200, res.body);
        assert.equal(JSON.parse(res.body).bytes, body.length);
    });

    it("rejects a body above proxy-body-size up front (413), and accepts one just below", async () => {
        const auth = Buffer.from(`alice:${USERS[0][1]}`).toString("base64");
        const limit = nginxSizeValue(INGRESS.proxyBodySize);
        assert.ok(limit >= 2 ** 30, `the default upload limit (${INGRESS.proxyBodySize}) carries multi-GB models`);
        assert.match(await statusForDeclaredLength(nginx!.port, String(limit + 1), auth, 5000), /^HTTP\/1\.1 413 /);
        // At the limit nginx accepts the head and waits to stream the body to the upstream.
        const below = await statusForDeclaredLength(nginx!.port, String(limit), auth, 1000);
        assert.equal(below, "no answer");
    });
});
