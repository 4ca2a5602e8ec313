"""PIL's convert("RGB") of the fixture PNGs that are not RGB (grey, RGBA, palette), the reference
ImagesTests compares vitlens's decoder with (tolerance 0). Needs numpy and pillow only."""
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["images/none/b_chelsea_grey.png", "images/none/c_coffee_rgba.png", "images/none/sub/d_rocket_palette.png"]


def main():
    arrays = [np.asarray(Image.open(os.path.join(HERE, f)).convert("RGB")) for f in FILES]
    np.save(os.path.join(HERE, "golden", "png_modes_pil.npy"), np.stack(arrays).astype(np.uint8))


if __name__ == "__main__":
    main()
