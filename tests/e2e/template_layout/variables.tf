variable "proxmox_endpoint" {
  type = string
}

variable "proxmox_insecure" {
  type    = bool
  default = false
}

variable "proxmox_node" {
  type = string
}

variable "proxmox_iso_storage" {
  type    = string
  default = "local"
}

variable "proxmox_disk_storage" {
  type    = string
  default = "local-lvm"
}

variable "talos_version" {
  type = string
}

variable "node_vlan_tag" {
  type    = number
  default = null
}

variable "nodes" {
  type = map(object({
    vm_id          = number
    controller     = bool
    cores          = number
    sockets        = number
    memory         = number
    disk_size      = number
    startup_order  = number
    startup_delay  = number
    shutdown_delay = number
    mac_addr       = string
    mtu            = optional(number)
    schematic_id   = string
    secureboot     = bool
  }))
}
