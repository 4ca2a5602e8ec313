"""SigLIP and BEiT as Hugging Face publishes them, with float64 goldens from transformers:
a SiglipVisionModel folder (saved by transformers 5), a full SiglipModel folder (both towers, the
image tower under `vision_model.`, its attention-pooling head), a BeitModel folder (q/v biases, a
relative position table per layer, LayerScale as lambda_1/lambda_2, no absolute positions, the
mean-pooling head's LayerNorm) and a BeitForImageClassification folder with one shared table and
absolute positions. 2 layers, width 16, 2 heads, 32x32 images, patch 8. The reference is
transformers in float64: representation i is layer i's first LayerNorm output, the last one the
final norm on every token (SigLIP's post_layernorm, BEiT's pooler LayerNorm), attention the eager
probabilities. Run from the repository root: python3 Tests/Fixtures/make_hf_siglip_beit_fixtures.py."""
import numpy as np
import torch
from transformers import (BeitConfig, BeitForImageClassification, BeitModel, SiglipConfig, SiglipModel, SiglipTextConfig,
                          SiglipVisionConfig, SiglipVisionModel)

import make_fixtures as F
import make_hf_clip_fixtures as C

SIGLIP = dict(hidden_size=F.DIM, intermediate_size=2 * F.DIM, num_hidden_layers=F.DEPTH, num_attention_heads=F.HEADS,
              image_size=F.IMG, patch_size=F.PATCH)
BEIT = dict(hidden_size=F.DIM, intermediate_size=2 * F.DIM, num_hidden_layers=F.DEPTH, num_attention_heads=F.HEADS,
            image_size=F.IMG, patch_size=F.PATCH, layer_norm_eps=1e-6, vocab_size=20)
f32 = lambda ts: torch.stack(list(ts)).float().numpy()


def relative_tables(model, scale=0.8):
    """Relative position tables large enough to reorder the attention."""
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k.endswith("relative_position_bias_table"):
                v.copy_(scale * torch.randn_like(v))


def save_goldens(name, feats, attn):
    np.save(F.out("golden", f"family_{name}_features.npy"), feats)
    np.save(F.out("golden", f"family_{name}_attention.npy"), attn)
    print(name, "features", feats.shape, "attention", attn.shape)


def eager(cfg):
    cfg._attn_implementation = "eager"
    return cfg


def siglip_reference(vision, x):
    vision = vision.double().eval()
    tower = getattr(vision, "vision_model", vision)
    normed = []
    for layer in tower.encoder.layers:
        layer.layer_norm1.register_forward_hook(lambda m, i, o: normed.append(o))
    with torch.no_grad():
        out = vision(pixel_values=x.double(), output_attentions=True)
    normed.append(out.last_hidden_state)  # post_layernorm on every token
    return f32(normed), f32(out.attentions)


def beit_reference(model, x):
    model = model.double().eval()
    beit = getattr(model, "beit", model)
    normed = []
    # transformers 5 keeps the layers as `layers` in memory (and writes the hub's encoder.layer.N).
    for layer in getattr(beit, "layers", None) or beit.encoder.layer:
        layer.layernorm_before.register_forward_hook(lambda m, i, o: normed.append(o))
    with torch.no_grad():
        out = beit(pixel_values=x.double(), output_attentions=True)
        # Mean pooling: BeitModel's layernorm is the identity and the pooler's LayerNorm the
        # final norm, applied here to every token.
        pooled = getattr(beit.pooler, "layernorm", None) if beit.pooler is not None else None
        normed.append(pooled(out.last_hidden_state) if pooled is not None else out.last_hidden_state)
    return f32(normed), f32(out.attentions)


def main():
    x = F.preprocess(F.list_images(F.out("images", "none")), False)
    # SigLIP: hidden_act gelu_pytorch_tanh, eps 1e-6 (transformers' defaults), the MAP head kept.
    vision = SiglipVisionModel(eager(SiglipVisionConfig(**SIGLIP)))
    C.randomise(vision, 41, extra_norms=("vision_model.head.layernorm.weight",))
    vision.save_pretrained(F.out("checkpoints", "family_hf_siglipvision"))
    full = SiglipModel(SiglipConfig(text_config=SiglipTextConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                                                  num_attention_heads=2, vocab_size=50,
                                                                  max_position_embeddings=7).to_dict(),
                                    vision_config=SiglipVisionConfig(**SIGLIP).to_dict()))
    full.vision_model.load_state_dict(getattr(vision, "vision_model", vision).state_dict())
    full.save_pretrained(F.out("checkpoints", "family_hf_siglip"))
    save_goldens("hf_siglip", *siglip_reference(vision, x))
    # BEiT: a table per layer, LayerScale, mean pooling (BeitModel).
    beit = BeitModel(eager(BeitConfig(**BEIT, use_relative_position_bias=True, use_absolute_position_embeddings=False,
                                      layer_scale_init_value=0.1, use_mean_pooling=True)))
    C.randomise(beit, 43, layer_scale="lambda_", extra_norms=("pooler.layernorm.weight",))
    relative_tables(beit)
    beit.save_pretrained(F.out("checkpoints", "family_hf_beit"))
    save_goldens("hf_beit", *beit_reference(beit, x))
    # BEiT with one shared table, absolute positions, no LayerScale, the final layernorm
    # (BeitForImageClassification, use_mean_pooling False).
    cls = BeitForImageClassification(eager(BeitConfig(**BEIT, use_shared_relative_position_bias=True, use_relative_position_bias=False,
                                                      use_absolute_position_embeddings=True, layer_scale_init_value=0.0,
                                                      use_mean_pooling=False, num_labels=3)))
    C.randomise(cls, 47)
    relative_tables(cls)
    cls.save_pretrained(F.out("checkpoints", "family_hf_beitshared"))
    save_goldens("hf_beitshared", *beit_reference(cls, x))


if __name__ == "__main__":
    main()
