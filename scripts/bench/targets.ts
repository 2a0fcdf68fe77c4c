// What `npm run bench` measures against on the local platform, and the machine it ran on.
import * as os from "os";
import type { LocalPlatform } from "../local/platform";
import type { Target } from "./tracking";

/** The targets a platform offers: through its edge (with the login) and straight to its MLflow. */
export function platformTargets(p: LocalPlatform): Target[] {
    const auth = `Basic ${Buffer.from(`${p.login.user}:${p.login.password}`).toString("base64")}`;
    return [
        { name: "platform via the edge", url: p.uiUrl, headers: { authorization: auth } },
        { name: "platform MLflow direct", url: `http://127.0.0.1:${p.servicePort("mlflow-tracking", 5000)}` },
    ];
}

export function machine(): Record<string, unknown> {
    return { cpus: os.cpus().length, model: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() };
}

