# This file is maintained automatically by "tofu init".
# Manual edits may be lost in future updates.

provider "registry.opentofu.org/bpg/proxmox" {
  version     = "0.111.1"
  constraints = "~> 0.111.1"
  hashes = [
    "h1:IC/HGHXssqGVekgrqJoNXIQMGOtt4icb0gIYQ83Rbak=",
  ]
}
