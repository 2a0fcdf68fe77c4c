import * as path from "path";
import { describePolicyStack } from "./policyStackSpec";

import { FIXTURES } from "../../harness";
// The stack that serves a model under the deploy controller (tests/fixtures/stacks/Pulumi.serving.yaml).
describePolicyStack("serving", { stackDir: path.join(FIXTURES, "stacks") });
