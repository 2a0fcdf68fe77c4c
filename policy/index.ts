// The CrossGuard policy pack of mlflow-platform. With the Pulumi CLI:
//   pulumi preview --policy-pack policy/
// Constructing the PolicyPack starts the policy server the CLI talks to, so nothing but the CLI should
// import this file; tests and scripts use `./policies` instead.
import { PolicyPack } from "@pulumi/policy";
import { PACK_NAME, policies } from "./policies";

export const pack = new PolicyPack(PACK_NAME, { policies, enforcementLevel: "mandatory" });
