// Kubernetes label selector semantics (apimachinery `metav1.LabelSelector` and Service selectors).

export type Labels = Record<string, string>;

export interface LabelSelectorRequirement {
    key: string;
    operator: string;
    values?: string[];
}

export interface LabelSelector {
    matchLabels?: Labels;
    matchExpressions?: LabelSelectorRequirement[];
}

const has = (labels: Labels, key: string): boolean => Object.prototype.hasOwnProperty.call(labels, key);

/**
 * Whether a `LabelSelector` selects an object with `labels`, as apimachinery evaluates it: every
 * matchLabels pair must be present, and every matchExpressions requirement must hold (In, NotIn, Exists,
 * DoesNotExist; an unknown operator selects nothing). An empty selector `{}` selects everything; an
 * absent (null) selector selects nothing.
 */
export function labelSelectorMatches(selector: LabelSelector | null | undefined, labels: Labels | null | undefined): boolean {
    if (selector === null || selector === undefined) return false;
    const l: Labels = labels ?? {};
    for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
        if (!has(l, key) || l[key] !== value) return false;
    }
    for (const req of selector.matchExpressions ?? []) {
        const values = req.values ?? [];
        switch (req.operator) {
            case "In":
                if (!has(l, req.key) || !values.includes(l[req.key])) return false;
                break;
            case "NotIn":
                if (has(l, req.key) && values.includes(l[req.key])) return false;
                break;
            case "Exists":
                if (!has(l, req.key)) return false;
                break;
            case "DoesNotExist":
                if (has(l, req.key)) return false;
                break;
            default:
                return false;
        }
    }
    return true;
}

/**
 * Whether a Service-style equality selector (a plain map) selects `labels`. An empty or absent map
 * selects nothing: such a Service gets no endpoints from the control plane.
 */
export function mapSelectorMatches(selector: Labels | null | undefined, labels: Labels | null | undefined): boolean {
    const entries = Object.entries(selector ?? {});
    if (entries.length === 0) return false;
    const l: Labels = labels ?? {};
    return entries.every(([key, value]) => has(l, key) && l[key] === value);
}

/** `a=1,b=2` and expressions, for messages. */
export function describeSelector(selector: LabelSelector | Labels | null | undefined): string {
    if (!selector) return "<none>";
    const s = selector as LabelSelector;
    const isLabelSelector = "matchLabels" in s || "matchExpressions" in s;
    const matchLabels = isLabelSelector ? s.matchLabels ?? {} : (selector as Labels);
    const parts = Object.entries(matchLabels).map(([k, v]) => `${k}=${v}`);
    if (isLabelSelector) {
        for (const req of s.matchExpressions ?? []) {
            parts.push(req.values && req.values.length ? `${req.key} ${req.operator} (${req.values.join(",")})` : `${req.operator === "DoesNotExist" ? "!" : ""}${req.key}`);
        }
    }
    return parts.length ? parts.join(",") : "<everything>";
}
