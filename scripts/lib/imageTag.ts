// The tag of an image the platform builds itself: its version, then 12 hex of the sha256 of the files
// that define it (name and content of each), so any change to them is a new tag.
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";

export function contentTag(version: string, files: readonly string[], read: (file: string) => Buffer = (f) => fs.readFileSync(path.join(__dirname, "..", "..", f))): string {
    const h = createHash("sha256");
    for (const f of files) h.update(f).update("\0").update(read(f)).update("\0");
    return `${version}-${h.digest("hex").slice(0, 12)}`;
}
