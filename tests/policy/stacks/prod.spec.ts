import { describePolicyStack } from "./policyStackSpec";

describePolicyStack("prod");
