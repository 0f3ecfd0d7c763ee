"""Reading a QR code back from a PNG the browser made: the PNG decoded here (no imaging library),
the symbol decoded by zxing-cpp."""

from __future__ import annotations

import struct
import zlib

import zxingcpp

# Bytes per pixel of 8-bit PNG colour types: greyscale, RGB, grey + alpha, RGBA.
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _paeth(left: int, up: int, corner: int) -> int:
    estimate = left + up - corner
    dl, du, dc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
    if dl <= du and dl <= dc:
        return left
    return up if du <= dc else corner


def png_greyscale(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, one byte of lightness per pixel) of a non-interlaced PNG, 8-bit (what a
    browser's screenshot is) or 1-bit greyscale (what segno writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, idat = 8, b""
    width = height = depth = colour = interlace = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert (depth == 8 and colour in _CHANNELS or (depth, colour) == (1, 0)) and not interlace
    channels = _CHANNELS[colour]
    step = max(1, channels * depth // 8)  # the filters' "bytes per pixel"
    stride = (width * channels * depth + 7) // 8
    raw = zlib.decompress(idat)
    previous = bytearray(stride)
    grey = bytearray()
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up = previous[x]
            corner = previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[x] = (line[x] + _paeth(left, up, corner)) & 0xFF
        previous = line
        if depth == 1:
            grey.extend(255 if line[x // 8] >> (7 - x % 8) & 1 else 0 for x in range(width))
            continue
        for x in range(width):
            pixel = line[x * channels : (x + 1) * channels]
            grey.append(pixel[0] if channels <= 2 else (pixel[0] * 30 + pixel[1] * 59 + pixel[2] * 11) // 100)
    return width, height, bytes(grey)


def read_qr_codes(png: bytes) -> list[str]:
    """The text of every QR code in the picture."""
    width, height, grey = png_greyscale(png)
    image = memoryview(grey).cast("B", (height, width))
    return [found.text for found in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]
