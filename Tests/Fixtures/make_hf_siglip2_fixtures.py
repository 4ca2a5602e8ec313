"""SigLIP 2 NaFlex as Hugging Face publishes it, with float64 goldens from transformers: a
Siglip2VisionModel folder (saved by transformers 5, no prefix) and a full Siglip2Model folder (both
towers, the image tower under `vision_model.`). 2 layers, width 16, 2 heads, patch 8, a 4x4
learned position table; the linear patch embedding reads each patch as (py, px, channel), and the
position table is resized to the image's grid by transformers' own bilinear, antialiased,
half-pixel-centred interpolation: the goldens are at 32 px (4x4, the table as trained), 48 px (6x6,
enlarged) and 24 px (3x3, reduced: the antialiasing widens the kernel). Representation i is layer
i's first LayerNorm output, the last one post_layernorm on every token; attention the eager
probabilities. Run from the repository root: python3 Tests/Fixtures/make_hf_siglip2_fixtures.py."""
import numpy as np
import torch
from transformers import Siglip2Config, Siglip2Model, Siglip2TextConfig, Siglip2VisionConfig, Siglip2VisionModel

import make_fixtures as F
import make_hf_clip_fixtures as C
from make_hf_aimv2_fixtures import transformers_reference

VISION = dict(hidden_size=F.DIM, intermediate_size=2 * F.DIM, num_hidden_layers=F.DEPTH, num_attention_heads=F.HEADS,
              patch_size=F.PATCH, num_patches=16)

def patches(x, p):
    """transformers' convert_image_to_patches for a batch: (B, C, H, W) → (B, gh·gw, p·p·C)."""
    B, C, H, W = x.shape
    t = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return t.reshape(B, (H // p) * (W // p), p * p * C), torch.tensor([[H // p, W // p]] * B)


def reference(vision, x):
    pixel, shapes = patches(x.double(), F.PATCH)
    norms = lambda m: [layer.layer_norm1 for layer in getattr(m, "vision_model", m).encoder.layers]
    return transformers_reference(vision, norms, pixel_values=pixel, spatial_shapes=shapes,
                                  pixel_attention_mask=torch.ones(pixel.shape[:2], dtype=torch.long))


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    x48 = torch.from_numpy(np.load(F.out("golden", "size48_input.npy")))
    x24 = x[:, :, 4:28, 4:28].contiguous()
    np.save(F.out("golden", "siglip2_size24_input.npy"), x24.numpy())
    cfg = Siglip2VisionConfig(**VISION)
    cfg._attn_implementation = "eager"
    vision = Siglip2VisionModel(cfg)
    C.randomise(vision, 53, extra_norms=("vision_model.head.layernorm.weight",))
    vision.save_pretrained(F.out("checkpoints", "family_hf_siglip2vision"))
    text = Siglip2TextConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                             vocab_size=50, max_position_embeddings=7)
    full = Siglip2Model(Siglip2Config(text_config=text.to_dict(), vision_config=Siglip2VisionConfig(**VISION).to_dict()))
    full.vision_model.load_state_dict(getattr(vision, "vision_model", vision).state_dict())
    full.save_pretrained(F.out("checkpoints", "family_hf_siglip2"))
    for suffix, inp in (("", x), ("_size48", x48), ("_size24", x24)):
        feats, attn = reference(vision, inp)
        np.save(F.out("golden", f"family_hf_siglip2{suffix}_features.npy"), feats)
        np.save(F.out("golden", f"family_hf_siglip2{suffix}_attention.npy"), attn)
        print("hf_siglip2", inp.shape[-1], "px", feats.shape, attn.shape)


if __name__ == "__main__":
    main()
