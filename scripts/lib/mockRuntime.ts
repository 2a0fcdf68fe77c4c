// The Pulumi mock runtime shared by the unit tests and by `npm run render`: it records every resource
// the program registers (with the inputs that would be sent to Kubernetes) and fills in the outputs a
// real engine would compute. Only this module talks to `pulumi.runtime.setMocks`.
import { createHmac, randomBytes } from "crypto";
import * as pulumi from "@pulumi/pulumi";

export const PROJECT = "mlflow-platform";

/** Marker the Pulumi SDK uses to serialize a secret value (see the SDK's rpc.ts). */
export const SECRET_SIG = "4dabf18193072939515e22adb298388d";
export const SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270";

export interface Registered {
    type: string;
    name: string;
    inputs: any;
    custom: boolean;
    /** Its URN, as the engine names it (parent types joined with `$`, then `::name`); set by the mock runtime. */
    urn?: string;
    /** URNs the resource was registered as depending on (dependsOn and data flow), as the engine sees them. */
    dependencies: string[];
    /** The resource options that decide what `pulumi destroy` does to it (the mocks' arguments omit them). */
    options: { protect?: boolean; retainOnDelete?: boolean };
}

/** Every resource registered since the last `resetRegistry()`, in registration order. */
export const registered: Registered[] = [];
export const resetRegistry = (): void => {
    registered.length = 0;
};

export const isSecretValue = (v: unknown): v is { value: unknown } =>
    typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG] === SECRET_VALUE;
export const unsecret = (v: any): any => (isSecretValue(v) ? v.value : v);
const asSecret = (value: unknown) => ({ [SECRET_SIG]: SECRET_VALUE, value });

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?";

/**
 * A password the way random.RandomPassword would build it (length, special, overrideSpecial), derived
 * from a seed and the resource name so that one seed always renders the same credentials.
 */
export function mockPassword(seed: string, name: string, inputs: Record<string, any>): string {
    const length = Number(inputs.length ?? 16);
    const alphabet = ALPHANUMERIC + (inputs.special === false ? "" : String(inputs.overrideSpecial ?? DEFAULT_SPECIAL));
    let out = "";
    for (let block = 0; out.length < length; block++) {
        const bytes = createHmac("sha256", seed).update(`${name}/${block}`).digest();
        for (const b of bytes) if (out.length < length) out += alphabet[b % alphabet.length];
    }
    return out;
}

export interface MockOptions {
    stack?: string;
    /** Seed for generated passwords; random per process unless given. */
    seed?: string;
}

/** URN, dependencies and options of the registration in flight; the mock monitor calls newResource synchronously. */
let inFlightDependencies: string[] = [];
let inFlightUrn = "";
let inFlightOptions: Registered["options"] = {};

export async function installMocks(options: MockOptions = {}): Promise<void> {
    const seed = options.seed ?? randomBytes(16).toString("hex");
    await pulumi.runtime.setMocks(
        {
            newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
                registered.push({ type: args.type, name: args.name, inputs: args.inputs, custom: args.custom ?? false, urn: inFlightUrn, dependencies: inFlightDependencies, options: inFlightOptions });
                const state: Record<string, any> = { ...args.inputs };
                if (args.type.startsWith("kubernetes:") && args.custom) {
                    // The provider autonames objects without metadata.name; renders use the resource name.
                    state.metadata = { name: args.name, ...(args.inputs.metadata ?? {}) };
                }
                if (args.type === "random:index/randomPassword:RandomPassword") {
                    // The engine marks `result` secret (additionalSecretOutputs); mocks must do it themselves.
                    state.result = asSecret(mockPassword(seed, args.name, args.inputs));
                }
                if (args.type === "random:index/randomBytes:RandomBytes") {
                    const bytes = Buffer.from(mockPassword(seed, args.name, { length: Number(args.inputs.length) * 2, special: false })).subarray(0, Number(args.inputs.length));
                    state.base64 = asSecret(bytes.toString("base64"));
                    state.hex = asSecret(bytes.toString("hex"));
                }
                if (args.type === "command:local:Command") Object.assign(state, { stdout: "", stderr: "" });
                return { id: `${args.name}-id`, state };
            },
            call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
                throw new Error(`unmocked call ${args.token}`);
            },
        },
        PROJECT,
        options.stack ?? "dev",
        false,
    );
    // MockResourceArgs omits dependencies, options and the URN; read them from the request the SDK sends to
    // the monitor (the URN as the mock monitor itself names it, so it matches the dependency URNs).
    const monitor = pulumi.runtime.getMonitor() as any;
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req: any, callback: unknown) => {
        inFlightDependencies = req.getDependenciesList();
        inFlightUrn = monitor.newUrn(req.getParent(), req.getType(), req.getName());
        inFlightOptions = {
            ...(req.hasProtect() ? { protect: req.getProtect() } : {}),
            ...(req.hasRetainondelete() ? { retainOnDelete: req.getRetainondelete() } : {}),
        };
        return register(req, callback);
    };
}

/** Stores stack config the way the CLI would pass it; keys without a namespace get the project's. */
export function setStackConfig(values: Record<string, unknown>, secretKeys: string[] = []): void {
    const fq = (k: string) => (k.includes(":") ? k : `${PROJECT}:${k}`);
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(values)) flat[fq(k)] = typeof v === "string" ? v : JSON.stringify(v);
    pulumi.runtime.setAllConfig(flat, secretKeys.map(fq));
}
