// Loaded by node before jsii's runtime (NODE_OPTIONS --require, set by cdktf_runtime):
// a Node.js older than cdktf's minimum stops here, silently (jsii would print our stderr
// as raw bytes); Python then asks `node --version` and says which Node.js is needed.
"use strict";
const need = (process.env.TALOS_CDKTF_NODE_MIN || "20.9").split(".").map(Number);
const have = process.versions.node.split(".").map(Number);
if (have[0] < need[0] || (have[0] === need[0] && have[1] < need[1])) {
  process.exit(78);
}
