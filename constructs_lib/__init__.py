"""Constructs: the state backend, the Proxmox provider, Talos ISOs and Talos VMs."""
