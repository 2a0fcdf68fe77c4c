// The dependency rules of the program, checked by `npm run test:unit` (tests/architecture.spec.ts):
// components/ and controller/ share only shared/; stacks/ reads the components' schemas, never a
// component; a schema is pure data (zod, the value types, the pinned images, shared/).
/** @type {import('dependency-cruiser').IConfiguration} */
const SCHEMA = "^components/(fields|images)\\.ts$|^components/[^/]+/schema\\.ts$";
module.exports = {
    forbidden: [
        { name: "components-not-controller", comment: "components/ never imports controller/: what both need lives in shared/", severity: "error", from: { path: "^components/" }, to: { path: "^controller/" } },
        { name: "controller-not-components", comment: "controller/ never imports components/ (nor stacks/): what both need lives in shared/", severity: "error", from: { path: "^controller/" }, to: { path: "^(components|stacks)/" } },
        { name: "shared-owned-by-none", comment: "shared/ is the contract components/ and controller/ both use; it imports neither", severity: "error", from: { path: "^shared/" }, to: { path: "^(components|controller|stacks|scripts)/" } },
        { name: "stacks-reads-schemas-only", comment: "stacks/ composes the components' schemas and imports no component", severity: "error", from: { path: "^stacks/" }, to: { path: "^components/", pathNot: SCHEMA } },
        { name: "schemas-are-pure", comment: "a config schema imports only zod, the value types, the pinned images and shared/: no Pulumi, no component", severity: "error", from: { path: SCHEMA }, to: { pathNot: `${SCHEMA}|^shared/|^node_modules/(zod|cron-parser|luxon)/` } },
        { name: "components-not-stacks", comment: "components get their config slice as an argument; they never read config", severity: "error", from: { path: "^components/" }, to: { path: "^stacks/" } },
        { name: "no-circular", severity: "error", from: {}, to: { circular: true } },
    ],
    options: {
        doNotFollow: { path: "node_modules" },
        tsPreCompilationDeps: true,
        tsConfig: { fileName: require("path").join(__dirname, "tsconfig.json") },
        exclude: { path: "^(node_modules|tests|policy/node_modules)/" },
    },
};
