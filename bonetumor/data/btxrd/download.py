"""The checksummed BTXRD download (figshare, Yao et al., Scientific Data 2025; doi 10.6084/m9.figshare.27865398)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from bonetumor import paths
from bonetumor.data.btxrd.files import find_root, hidden
from bonetumor.data.btxrd.problems import DatasetError

#: The dataset's figshare article (doi 10.6084/m9.figshare.27865398). Its ``ndownloader/articles/...`` link
#: serves a zip that figshare builds around the article's files, whose checksum is not the published one.
FIGSHARE_ARTICLE_URL = "https://figshare.com/ndownloader/articles/27865398/versions/1"
#: The article's single file, ``BTXRD.zip`` (figshare file id 50653575); the published MD5 is this file's.
FIGSHARE_URL = "https://ndownloader.figshare.com/files/50653575"
FIGSHARE_MD5 = "59132a5036d030580ccade8add8f13df"
#: Name the download is saved under in ``dest`` (not ``BTXRD.zip``: a wrapping zip may hold a ``BTXRD.zip``).
DOWNLOAD_NAME = "BTXRD-download.zip"


class DownloadError(RuntimeError):
    """The download failed (network, checksum or archive)."""


def download_btxrd(dest: str | os.PathLike | None = None, url: str = FIGSHARE_URL,
                   md5: str | None = FIGSHARE_MD5, progress: bool = True) -> Path:
    """Download and unzip BTXRD into ``dest`` (default ``data/``) with pooch, checking the MD5; return its root.

    Nothing is downloaded when ``dest`` already holds a readable BTXRD folder. ``md5=None`` skips the check
    (for a mirror whose checksum you do not know). If the archive holds another zip (figshare's
    whole-article download wraps ``BTXRD.zip``), that one is unzipped too.
    """
    dest = Path(dest if dest is not None else paths.DATA).expanduser().resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return find_root(dest)
    except DatasetError:
        pass
    _retrieve(url, md5, dest, progress)
    try:
        return find_root(dest)
    except DatasetError:
        pass
    _unzip_inner_archives(dest)
    try:
        return find_root(dest)
    except DatasetError as exc:
        raise DownloadError(f"{url}: the archive unzipped into {dest} but holds no BTXRD layout ({exc})") from exc


def _retrieve(url: str, md5: str | None, dest: Path, progress: bool) -> None:
    """Download ``url`` into ``dest`` as :data:`DOWNLOAD_NAME`, check its MD5 and unzip it there."""
    import pooch

    known = None
    if md5:
        md5 = md5.lower().removeprefix("md5:")
        known = f"md5:{md5}"
    try:
        pooch.retrieve(url, known_hash=known, fname=DOWNLOAD_NAME, path=dest,
                       processor=pooch.Unzip(extract_dir="."), progressbar=progress)
    except ValueError as exc:
        if "hash" in str(exc).lower():
            raise DownloadError(f"{url}: the download does not match MD5 {md5} and was discarded ({exc}). "
                                "Retry, or give the right --url/--md5.") from exc
        raise DownloadError(f"{url}: {exc}") from exc
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{url}: the download is not a zip archive ({exc})") from exc
    except Exception as exc:  # requests' network errors
        raise DownloadError(f"{url}: download failed: {type(exc).__name__}: {exc}") from exc


def _unzip_inner_archives(dest: Path) -> None:
    """Unzip, next to itself, every zip the download held (figshare's article zip wraps ``BTXRD.zip``)."""
    inner = [p for p in dest.rglob("*.zip") if p.name != DOWNLOAD_NAME and not hidden(p, dest)]
    for archive in inner:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(archive.parent)
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{archive}: not a zip archive ({exc})") from exc
