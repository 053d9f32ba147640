# The resources of the Jinja-template layout this project replaces, at their addresses
# (for_each over nodes and ISO keys, the long deprecated download-file type), written
# as that layout renders them. test_migration.py applies this to fakepve, then plans the
# cdktf stack against the same state: only moves, nothing to add, change or destroy.
#
# Inputs come from terraform.tfvars.json (written by the test), already resolved the way
# the template's defaults chain resolves them; the backend from an override file.

terraform {
  required_version = "~> 1.11.0"
  required_providers {
    proxmox = {
      source  = "bpg/proxmox"
      version = "~> 0.111.1"
    }
  }
  backend "local" {}
}

provider "proxmox" {
  endpoint = var.proxmox_endpoint
  insecure = var.proxmox_insecure
  ssh {
    agent = true
  }
}

locals {
  tags = ["kubernetes", "linux", "talos"]
  # One ISO per distinct (schematic, secureboot) pair, keyed "<schematic>-<true|false>".
  isos = {
    for key, group in { for name, n in var.nodes : "${n.schematic_id}-${n.secureboot}" => n... } :
    key => { schematic_id = group[0].schematic_id, secureboot = group[0].secureboot }
  }
}

resource "proxmox_virtual_environment_download_file" "talos_iso" {
  for_each = local.isos

  content_type   = "iso"
  datastore_id   = var.proxmox_iso_storage
  node_name      = var.proxmox_node
  url            = "https://factory.talos.dev/image/${each.value.schematic_id}/v${var.talos_version}/nocloud-amd64${each.value.secureboot ? "-secureboot" : ""}.iso"
  file_name      = "talos-v${var.talos_version}-${substr(each.value.schematic_id, 0, 12)}${each.value.secureboot ? "-secureboot" : ""}.iso"
  overwrite      = true
  upload_timeout = 600
}

resource "proxmox_virtual_environment_vm" "talos_node" {
  for_each = var.nodes

  vm_id       = each.value.vm_id
  name        = each.key
  node_name   = var.proxmox_node
  description = each.value.controller ? "Talos Linux control plane node" : "Talos Linux worker node"
  tags        = concat(local.tags, [each.value.controller ? "controller" : "worker"])

  started = true
  on_boot = true
  bios    = "ovmf"
  machine = "q35"

  operating_system {
    type = "l26"
  }

  startup {
    order      = each.value.startup_order
    up_delay   = each.value.startup_delay
    down_delay = each.value.shutdown_delay
  }

  cpu {
    cores   = each.value.cores
    sockets = each.value.sockets
    type    = "host"
    numa    = true
  }

  memory {
    dedicated = each.value.memory
    floating  = 0
  }

  agent {
    enabled = true
  }

  efi_disk {
    datastore_id      = var.proxmox_disk_storage
    type              = "4m"
    pre_enrolled_keys = false
  }

  cdrom {
    file_id   = proxmox_virtual_environment_download_file.talos_iso["${each.value.schematic_id}-${each.value.secureboot}"].id
    interface = "ide2"
  }

  disk {
    datastore_id = var.proxmox_disk_storage
    interface    = "scsi0"
    size         = each.value.disk_size
    file_format  = "raw"
    ssd          = true
    discard      = "on"
    backup       = false
    replicate    = false
    iothread     = false
  }

  scsi_hardware = "virtio-scsi-pci"

  network_device {
    bridge      = "vmbr0"
    mac_address = upper(each.value.mac_addr)
    model       = "virtio"
    queues      = 4
    vlan_id     = var.node_vlan_tag
    mtu         = each.value.mtu
  }

  serial_device {}

  vga {
    type = "std"
  }

  boot_order = ["scsi0", "ide2"]

  lifecycle {
    ignore_changes = [started, cdrom]
  }

  depends_on = [proxmox_virtual_environment_download_file.talos_iso]
}
