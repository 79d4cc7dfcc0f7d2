"""Classical codecs of the anchors, one class per backend: whether its library is installed, its version,
and encode / decode of one RGB image (see :mod:`tcmcodec.evaluation.anchors` for the measurement).

Adding a codec is one entry in :data:`CODECS`: an instance of an :class:`AnchorCodec` subclass with its sweep.
Codec libraries are optional and imported on use: Pillow (JPEG, WebP, JPEG 2000, AVIF), pillow_heif
(HEIF, AVIF), imagecodecs (JPEG XL, AVIF).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AnchorCodec", "AnchorCoder", "CODECS", "DEFAULT_CODECS", "available_codecs", "codec_versions", "encode", "decode"]


def _pil_save(img: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _pil_open(data: bytes) -> Any:
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _pil_version() -> str:
    import PIL

    return f"Pillow {PIL.__version__}"


@dataclass(frozen=True)
class AnchorCodec:
    """A codec anchor: ``values`` is the default sweep of ``param``, from low to high quality.

    Subclasses implement :meth:`check` (raise ImportError with a short reason when the library is
    missing), :meth:`version`, :meth:`encode` (RGB PIL image -> bytes) and :meth:`decode`.
    """

    key: str
    name: str
    param: str
    values: tuple[float, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def encode(self, img: Any, value: float) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        return _pil_open(data)


@dataclass(frozen=True)
class PillowCodec(AnchorCodec):
    """A format Pillow writes itself (JPEG, WebP, JPEG 2000); ``feature``: Pillow's feature name."""

    format: str = ""
    feature: str = ""
    library: str = ""

    def check(self) -> None:
        from PIL import features

        if not features.check(self.feature):
            raise ImportError(f"Pillow was built without {self.library} support")

    def version(self) -> str:
        from PIL import features

        if self.feature == "jpg":
            turbo = features.version("libjpeg_turbo")
            lib = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"
            return f"{lib} via {_pil_version()}"
        return f"{self.library} {features.version(self.feature)} via {_pil_version()}"

    def encode(self, img: Any, value: float) -> bytes:
        s = self.settings
        if self.format == "JPEG":
            return _pil_save(img, "JPEG", quality=int(value), subsampling=s["subsampling"], optimize=s["optimize"])
        if self.format == "WEBP":
            return _pil_save(img, "WEBP", quality=float(value), method=s["method"])
        return _pil_save(img, "JPEG2000", quality_mode=s["quality_mode"], quality_layers=[24.0 / float(value)],
                         irreversible=s["irreversible"], mct=s["mct"], no_jp2=s["no_jp2"])


@dataclass(frozen=True)
class AvifCodec(AnchorCodec):
    """AVIF through the first backend with an AV1 encoder: Pillow, pillow_heif or imagecodecs."""

    def check(self) -> None:
        _avif_backend()

    def version(self) -> str:
        from PIL import features

        backend = _avif_backend()
        if backend == "pillow":
            from PIL import _avif  # type: ignore[attr-defined]

            codecs = _avif.codec_versions() if hasattr(_avif, "codec_versions") else ""
            return f"libavif {features.version('avif')} ({codecs}) via {_pil_version()}"
        if backend == "pillow_heif":
            import pillow_heif

            info = pillow_heif.libheif_info()
            return f"libheif {info.get('libheif')} (AVIF: {info.get('AVIF')}) via pillow_heif {pillow_heif.__version__}"
        import imagecodecs

        return f"{imagecodecs.avif_version()} via imagecodecs {imagecodecs.__version__}"

    def encode(self, img: Any, value: float) -> bytes:
        s, backend = self.settings, _avif_backend()
        if backend == "pillow":
            return _pil_save(img, "AVIF", quality=int(value), subsampling=s["subsampling"], speed=s["speed"],
                             max_threads=s["max_threads"], advanced={"tune": s["tune"]})
        if backend == "pillow_heif":
            import pillow_heif

            buf = io.BytesIO()
            pillow_heif.from_pillow(img).save(buf, format="AVIF", quality=int(value), chroma=444,
                                              enc_params={"speed": str(s["speed"]), "tune": s["tune"]})
            return buf.getvalue()
        import imagecodecs  # no tune option here: libaom's default tune
        import numpy as np

        return bytes(imagecodecs.avif_encode(np.asarray(img), level=int(value), speed=s["speed"],
                                             pixelformat=imagecodecs.AVIF.PIXEL_FORMAT.YUV444,
                                             numthreads=s["max_threads"]))

    def decode(self, data: bytes) -> Any:
        backend = _avif_backend()
        if backend == "pillow":
            return _pil_open(data)
        if backend == "pillow_heif":
            import pillow_heif

            return pillow_heif.open_heif(io.BytesIO(data)).to_pillow()
        import imagecodecs
        from PIL import Image

        return Image.fromarray(imagecodecs.avif_decode(data, numthreads=1))


@dataclass(frozen=True)
class JpegXlCodec(AnchorCodec):
    """JPEG XL through imagecodecs (libjxl)."""

    def check(self) -> None:
        try:
            import imagecodecs
        except ImportError:
            raise ImportError("imagecodecs is not installed") from None
        if not imagecodecs.JPEGXL.available:
            raise ImportError("imagecodecs was built without JPEG XL (libjxl)")

    def version(self) -> str:
        import imagecodecs

        return f"{imagecodecs.jpegxl_version()} via imagecodecs {imagecodecs.__version__}"

    def encode(self, img: Any, value: float) -> bytes:
        import imagecodecs
        import numpy as np

        s = self.settings
        return bytes(imagecodecs.jpegxl_encode(np.asarray(img), distance=float(value), effort=s["effort"],
                                               numthreads=s["numthreads"]))

    def decode(self, data: bytes) -> Any:
        import imagecodecs
        from PIL import Image

        return Image.fromarray(imagecodecs.jpegxl_decode(data, numthreads=1))


@dataclass(frozen=True)
class HeifCodec(AnchorCodec):
    """HEIF (HEVC, x265) through pillow_heif."""

    def check(self) -> None:
        try:
            import pillow_heif
        except ImportError:
            raise ImportError("pillow_heif is not installed") from None
        if not pillow_heif.libheif_info().get("HEIF"):
            raise ImportError("libheif has no HEVC encoder (x265)")

    def version(self) -> str:
        import pillow_heif

        info = pillow_heif.libheif_info()
        dec = ", ".join(str(v) for v in (info.get("decoders") or {}).values())
        return (f"libheif {info.get('libheif')} (encoder: {info.get('HEIF')}; decoder: {dec}) "
                f"via pillow_heif {pillow_heif.__version__}")

    def encode(self, img: Any, value: float) -> bytes:
        import pillow_heif

        s = self.settings
        buf = io.BytesIO()
        enc_params = {"tune": s["tune"], "x265:pools": s["x265:pools"]}  # libheif's default x265 preset: slow
        pillow_heif.from_pillow(img).save(buf, format="HEIF", quality=int(value), chroma=int(s["chroma"]),
                                          enc_params=enc_params)
        return buf.getvalue()

    def decode(self, data: bytes) -> Any:
        import pillow_heif

        return pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True).to_pillow()


_JPEG_QUALITIES = (3, 5, 8, 12, 17, 25, 35, 50, 65, 78, 87, 92)
# Sweeps chosen on Kodak to span about 0.1 to 2 bpp where the codec can (JPEG and WebP cannot go much below
# 0.15-0.25 bpp on Kodak even at their lowest quality).
CODECS: dict[str, AnchorCodec] = {
    c.key: c
    for c in (
        PillowCodec("jpeg", "JPEG 4:2:0", "quality", _JPEG_QUALITIES, {"subsampling": "4:2:0", "optimize": True},
                    format="JPEG", feature="jpg", library="JPEG"),
        PillowCodec("jpeg444", "JPEG 4:4:4", "quality", _JPEG_QUALITIES, {"subsampling": "4:4:4", "optimize": True},
                    format="JPEG", feature="jpg", library="JPEG"),
        PillowCodec("webp", "WebP", "quality", (0, 5, 10, 20, 30, 45, 60, 75, 85, 90, 95), {"method": 6},
                    format="WEBP", feature="webp", library="libwebp"),
        AvifCodec("avif", "AVIF 4:4:4", "quality", (10, 20, 30, 40, 50, 60, 70, 78, 85, 90),
                  {"subsampling": "4:4:4", "speed": 4, "tune": "psnr", "max_threads": 1}),
        PillowCodec("jpeg2000", "JPEG 2000", "target bpp", (0.1, 0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0),
                    {"irreversible": True, "mct": 1, "quality_mode": "rates", "no_jp2": True},
                    format="JPEG2000", feature="jpg_2000", library="OpenJPEG"),
        JpegXlCodec("jpegxl", "JPEG XL", "distance", (25.0, 18.0, 12.0, 8.0, 5.5, 4.0, 3.0, 2.2, 1.6, 1.2, 0.9),
                    {"effort": 7, "numthreads": 1}),
        HeifCodec("heif", "HEIF (HEVC) 4:4:4", "quality", (8, 14, 20, 26, 32, 38, 44, 50, 56, 62),
                  {"chroma": "444", "tune": "psnr", "x265:pools": "none"}),
    )
}
DEFAULT_CODECS = tuple(CODECS)


def _get(key: str) -> AnchorCodec:
    try:
        return CODECS[key]
    except KeyError:
        raise KeyError(f"unknown codec {key!r}; known: {', '.join(CODECS)}") from None


def available_codecs(codecs: Iterable[str] | None = None) -> dict[str, str | None]:
    """``{key: None if usable else reason}`` for the given (default: all) codec keys."""
    out: dict[str, str | None] = {}
    for key in codecs or DEFAULT_CODECS:
        try:
            _get(key).check()
            out[key] = None
        except ImportError as e:
            out[key] = str(e)
    return out


def codec_versions(key: str) -> str:
    """Library versions behind a codec, as a short human-readable string."""
    return _get(key).version()


def encode(key: str, img: Any, value: float) -> bytes:
    """Encode an RGB PIL image with codec ``key`` at sweep value ``value``; returns the file's bytes."""
    return _get(key).encode(img, value)


def decode(key: str, data: bytes) -> Any:
    """Decode bytes written by :func:`encode` back to an RGB PIL image."""
    im = _get(key).decode(data)
    return im if im.mode == "RGB" else im.convert("RGB")


class AnchorCoder:
    """Codec ``key`` as a :class:`tcmcodec.evaluation.measure.Coder` (``param``: its sweep value)."""

    def __init__(self, key: str) -> None:
        self.key = _get(key).key

    def encode(self, image: Any, param: float) -> tuple[bytes, None]:
        return encode(self.key, image, param), None

    def decode(self, data: bytes) -> Any:
        return decode(self.key, data)


def _avif_backend() -> str:
    """'pillow', 'pillow_heif' or 'imagecodecs' (first with an AV1 encoder), or raise ImportError."""
    try:
        from PIL import features

        if features.check("avif"):
            from PIL import _avif  # type: ignore[attr-defined]

            # e.g. "dav1d [dec]:1.5.3, aom [enc]:3.14.1": needs an AV1 encoder and decoder
            codecs = _avif.codec_versions() if hasattr(_avif, "codec_versions") else "[enc] [dec]"
            if "[enc" in codecs and ("[dec" in codecs or "[enc/dec" in codecs):
                return "pillow"
    except ImportError:  # a Pillow without the AVIF plugin (or without its private module)
        pass
    try:
        import pillow_heif

        if pillow_heif.libheif_info().get("AVIF"):
            return "pillow_heif"
    except ImportError:
        pass
    try:
        import imagecodecs

        if imagecodecs.AVIF.available:
            return "imagecodecs"
    except ImportError:
        pass
    raise ImportError("no AVIF encoder (Pillow's AVIF plugin, pillow_heif with AV1, or imagecodecs with avif)")
