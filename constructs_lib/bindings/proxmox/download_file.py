"""`proxmox_download_file`: a file the Proxmox node downloads from a URL (an ISO here).

The short name since provider 0.100; `proxmox_virtual_environment_download_file` is its
deprecated alias, and the provider moves state from that name to this one.
"""

from __future__ import annotations

from collections.abc import Sequence

import cdktf
from constructs import Construct

from constructs_lib.bindings.proxmox._base import ProxmoxResource, attributes


class DownloadFile(ProxmoxResource):
    TF_RESOURCE_TYPE = "proxmox_download_file"

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        content_type: str,
        datastore_id: str,
        node_name: str,
        url: str,
        file_name: str | None = None,
        checksum: str | None = None,
        checksum_algorithm: str | None = None,
        decompression_algorithm: str | None = None,
        overwrite: bool | None = None,
        overwrite_unmanaged: bool | None = None,
        upload_timeout: int | None = None,
        verify: bool | None = None,
        depends_on: Sequence[cdktf.ITerraformDependable] | None = None,
        lifecycle: cdktf.TerraformResourceLifecycle | None = None,
        provider: cdktf.TerraformProvider | None = None,
    ) -> None:
        attrs = attributes(
            content_type=content_type,
            datastore_id=datastore_id,
            node_name=node_name,
            url=url,
            file_name=file_name,
            checksum=checksum,
            checksum_algorithm=checksum_algorithm,
            decompression_algorithm=decompression_algorithm,
            overwrite=overwrite,
            overwrite_unmanaged=overwrite_unmanaged,
            upload_timeout=upload_timeout,
            verify=verify,
        )
        super().__init__(scope, id_, attrs, depends_on=depends_on, lifecycle=lifecycle, provider=provider)

    @property
    def id(self) -> str:
        """`<datastore>:<content type>/<file name>`, known after apply."""
        return self.get_string_attribute("id")

    @property
    def file_name(self) -> str:
        return self.get_string_attribute("file_name")

    @property
    def size(self) -> float:
        return self.get_number_attribute("size")
