// Structured logs: one JSON object per line on stdout ({time, level, msg, ...fields}), the format log
// collectors parse without configuration. Error values are reduced to their message.

export type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
    debug(msg: string, fields?: Fields): void;
    info(msg: string, fields?: Fields): void;
    warn(msg: string, fields?: Fields): void;
    error(msg: string, fields?: Fields): void;
    /** A logger that adds `fields` to every line. */
    child(fields: Fields): Logger;
}

function plain(v: unknown): unknown {
    if (v instanceof Error) return v.message;
    return v;
}

export function createLogger(level: Level = "info", write: (line: string) => void = (l) => process.stdout.write(l), base: Fields = {}): Logger {
    const emit = (lvl: Level, msg: string, fields?: Fields) => {
        if (ORDER[lvl] < ORDER[level]) return;
        const entry: Fields = { time: new Date().toISOString(), level: lvl, msg };
        for (const [k, v] of Object.entries({ ...base, ...(fields ?? {}) })) if (v !== undefined) entry[k] = plain(v);
        let line: string;
        try {
            line = JSON.stringify(entry);
        } catch {
            line = JSON.stringify({ time: entry.time, level: lvl, msg, note: "fields not serializable" });
        }
        write(line + "\n");
    };
    return {
        debug: (m, f) => emit("debug", m, f),
        info: (m, f) => emit("info", m, f),
        warn: (m, f) => emit("warn", m, f),
        error: (m, f) => emit("error", m, f),
        child: (f) => createLogger(level, write, { ...base, ...f }),
    };
}
