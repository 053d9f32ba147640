"""A Talos ISO from the Image Factory, downloaded onto the Proxmox ISO datastore."""

from __future__ import annotations

from constructs import Construct

from config import IsoSpec, ProxmoxSpec
from constructs_lib.bindings.proxmox import DownloadFile

# The template layout's address for the same object, for `moved` blocks.
TEMPLATE_ADDRESS = 'proxmox_virtual_environment_download_file.talos_iso["{key}"]'


class TalosIso(Construct):
    def __init__(self, scope: Construct, id_: str, iso: IsoSpec, proxmox: ProxmoxSpec) -> None:
        super().__init__(scope, id_)
        self.spec = iso
        self.file = DownloadFile(
            self,
            "file",
            content_type="iso",
            datastore_id=proxmox.iso_storage,
            node_name=iso.host,
            url=iso.url,
            # Always named: the provider would otherwise ask the URL's metadata for one.
            file_name=iso.file_name,
            overwrite=True,
            upload_timeout=600,
        )
        self.file.override_logical_id(iso.logical_id)
        # Tokens for the VMs and outputs, fetched once (a jsii round trip each).
        self.file_id = self.file.id
        self.file_name = self.file.file_name

    @property
    def address(self) -> str:
        return f"{self.file.terraform_resource_type}.{self.spec.logical_id}"

    @property
    def template_address(self) -> str:
        return TEMPLATE_ADDRESS.format(key=self.spec.template_key)
