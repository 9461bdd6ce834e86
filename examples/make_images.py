"""Makes the small sample images the README's edit examples upload (run from the repository root:
`.venv/bin/python examples/make_images.py`). They are committed; this says how they were made.

- base.png  256x256 sky over a green hill (the image to edit)
- mask.png  256x256 RGBA, transparent where the edit may paint (the sky), opaque elsewhere
- a.png     256x256 a red square on white
- b.jpg     256x256 a blue circle on white (JPEG)
"""
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 256


def main() -> None:
    base = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(base)
    for y in range(SIZE):  # a vertical sky gradient
        draw.line([(0, y), (SIZE, y)], fill=(90 + y // 4, 150 + y // 5, 235))
    draw.ellipse([-64, 150, SIZE + 64, 400], fill=(70, 140, 60))
    base.save(HERE / "base.png", optimize=True)

    mask = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle([0, 0, SIZE, 140], fill=(0, 0, 0, 0))
    mask.save(HERE / "mask.png", optimize=True)

    a = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(a).rectangle([64, 64, 192, 192], fill=(220, 40, 40))
    a.save(HERE / "a.png", optimize=True)

    b = Image.new("RGB", (SIZE, SIZE), "white")
    ImageDraw.Draw(b).ellipse([48, 48, 208, 208], fill=(40, 80, 220))
    b.save(HERE / "b.jpg", quality=85)


if __name__ == "__main__":
    main()
