// The htpasswd file behind the edge's basic auth: reproducible bcrypt hashes in the `$2y$` form that
// nginx (glibc libxcrypt and musl) and Apache's htpasswd read. Pure functions.
import { createHmac } from "crypto";
import * as bcrypt from "bcryptjs";
import { USER_NAME } from "./schema";

/**
 * bcrypt cost: 4, the lowest every reader accepts (libxcrypt, musl, Go's x/crypto/bcrypt for Traefik).
 * Basic auth has no session, so the edge runs crypt() on every request: at cost 10 that was ~60 ms of a
 * core per request, which capped the whole platform at ~15 requests/s. A slow hash protects guessable
 * passwords; these are generated (32 random characters, ~190 bits), so no cost makes them easier or
 * harder to guess, and cost 4 keeps bcrypt's salt and format at ~1 ms.
 */
export const BCRYPT_COST = 4;

export interface HtpasswdOptions {
    /**
     * Secret seed per user name. With a seed the salt is HMAC-SHA256(seed, "user:password"), so the
     * hash is reproducible; without one the salt is random (fine for a throwaway file).
     */
    saltSeeds?: Readonly<Record<string, string>>;
    /** bcrypt cost. Defaults to BCRYPT_COST. */
    cost?: number;
}

/** The salt of a reproducible bcrypt hash: 16 bytes of HMAC-SHA256(seed, "user:password") in bcrypt's base64. */
export function stableSalt(seed: string, user: string, password: string, cost = BCRYPT_COST): string {
    const bytes = createHmac("sha256", seed).update(`${user}:${password}`).digest().subarray(0, 16);
    return `$2y$${String(cost).padStart(2, "0")}$${bcrypt.encodeBase64(Array.from(bytes), 16)}`;
}

/** One user's bcrypt hash (`$2y$`), reproducible when a seed is given. */
export function bcryptHash(user: string, password: string, saltSeed?: string, cost = BCRYPT_COST): string {
    if (password.length === 0) throw new Error(`htpasswd: the password of "${user}" is empty`);
    // bcrypt ignores everything after 72 bytes, so a longer password would be silently weakened.
    if (bcrypt.truncates(password)) throw new Error(`htpasswd: the password of "${user}" is longer than bcrypt's 72 bytes`);
    const salt = saltSeed !== undefined ? stableSalt(saltSeed, user, password, cost) : bcrypt.genSaltSync(cost).replace(/^\$2b\$/, "$2y$");
    return bcrypt.hashSync(password, salt);
}

/**
 * The contents of an htpasswd file (`user:$2y$04$…` lines, newline-terminated) for [user, password]
 * pairs, as nginx's `auth_basic_user_file` and ingress-nginx's `auth-file` Secret key read it.
 */
export function htpasswdFile(pairs: ReadonlyArray<readonly [string, string]>, options: HtpasswdOptions = {}): string {
    const seen = new Set<string>();
    return pairs
        .map(([user, password]) => {
            if (!USER_NAME.test(user)) throw new Error(`htpasswd: user name ${JSON.stringify(user)} is invalid: 1-64 of letters, digits, '.', '_' and '-'`);
            if (seen.has(user)) throw new Error(`htpasswd: duplicate user "${user}"`);
            seen.add(user);
            return `${user}:${bcryptHash(user, password, options.saltSeeds?.[user], options.cost ?? BCRYPT_COST)}\n`;
        })
        .join("");
}
