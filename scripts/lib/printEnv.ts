// The installers (scripts/tools/install-*.sh --print-env) report where things are as KEY=VALUE lines.

/** The KEY=VALUE lines of an installer's `--print-env` output; other lines are ignored. */
export function parsePrintEnv(stdout: string): Record<string, string> {
    const env: Record<string, string> = {};
    for (const line of stdout.split("\n")) {
        const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
        if (m) env[m[1]] = m[2];
    }
    return env;
}
