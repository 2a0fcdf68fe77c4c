import * as path from "path";
import { describePolicyStack } from "./policyStackSpec";

// The stack that serves a model under the deploy controller (tests/stacks/fixtures/Pulumi.serving.yaml).
describePolicyStack("serving", { stackDir: path.join(__dirname, "..", "stacks", "fixtures") });
