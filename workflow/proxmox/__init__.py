"""The Proxmox VE API as the workflow uses it, apart from the provider: the client
(api.py), what the cluster holds (inventory.py) and which privileges a config needs
(privileges.py)."""
