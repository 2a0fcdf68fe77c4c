import { describePolicyStack } from "./policyStackSpec";

describePolicyStack("staging");
