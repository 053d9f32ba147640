// Loaded by every node jsii starts, before jsii's runtime (NODE_OPTIONS --require, set by
// cdktf_runtime/__init__.py).
"use strict";

// A Node.js older than cdktf's minimum stops here, silently (jsii would print our stderr
// as raw bytes); Python then asks `node --version` and says which Node.js is needed.
const need = (process.env.TALOS_CDKTF_NODE_MIN || "20.9").split(".").map(Number);
const have = process.versions.node.split(".").map(Number);
if (have[0] < need[0] || (have[0] === need[0] && have[1] < need[1])) {
  process.exit(78);
}

// Ctrl-C is Python's: node runs in a process group of its own (node_group.py), and Python
// stops it through jsii's channel. Should a SIGINT reach node all the same (sent to it
// alone, or jsii started it in Python's group), it is ignored here rather than killing
// node mid-request; node also exits when Python's end of that channel closes.
process.on("SIGINT", () => {});
