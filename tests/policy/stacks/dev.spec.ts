import { describePolicyStack } from "./policyStackSpec";

describePolicyStack("dev");
