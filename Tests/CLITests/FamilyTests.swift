import Foundation
import TestSupport
import XCTest

/// ViT families beyond the plain ViT (DeiT III, DINOv2, DINOv2 with registers, CLIP), as timm,
/// Facebook and OpenAI/OpenCLIP publish them, against timm in float64 (Tests/Fixtures/make_family_fixtures.py):
/// every representation tap within 1e-3·max(1, |ref|), attention probabilities within 1e-4.
final class FamilyTests: TemporaryFolderTestCase {

    func extract(_ checkpoint: String, golden: String, tokens: Int, extra: [String] = [], line: UInt = #line) throws {
        let out = tmp + "/" + golden + "-" + (checkpoint as NSString).lastPathComponent
        let r = runProcess(
            CLITests.binary, ["extract", Fixtures.checkpoint(checkpoint), "--images", Fixtures.path("images/none"),
                                             "--resize", "none", "--batch", "3", "--out", out, "--quiet"] + extra)
        XCTAssertEqual(r.status, 0, r.stderr, line: line)
        let f = try NpyArray(path: out + "/features.npy"), a = try NpyArray(path: out + "/attention.npy")
        XCTAssertEqual(f.shape, [3, 4, tokens, 16], line: line)
        let cf = compare(
            f.values, try NpyArray(path: Fixtures.golden("family_\(golden)_features.npy")).values, tolerance: 1e-3,
            mixed: true)
        XCTAssertEqual(cf.violations, 0, "\(checkpoint) features: \(cf)", line: line)
        let ca = compare(
            a.values, try NpyArray(path: Fixtures.golden("family_\(golden)_attention.npy")).values, tolerance: 1e-4)
        XCTAssertEqual(ca.violations, 0, "\(checkpoint) attention: \(ca)", line: line)
    }

    func testFamiliesMatchTimm() throws {
        try extract("family_deit3.safetensors", golden: "deit3", tokens: 17)
        try extract("family_deit3_fb.pth", golden: "deit3", tokens: 17, extra: ["--heads", "2"])
        try extract("family_dinov2.safetensors", golden: "dinov2", tokens: 17)
        try extract("family_dinov2reg.safetensors", golden: "dinov2reg", tokens: 21)
        // timm's rotary ViT (make_rope_fixtures.py): no position table, so the trained size is not
        // in the file; run at the fixture's 32 px.
        try extract("family_ropevit.safetensors", golden: "ropevit", tokens: 17, extra: ["--image-size", "32"])
        try extract("family_dinov3.safetensors", golden: "dinov3", tokens: 21, extra: ["--image-size", "32"])
        try extract("family_ropemixed.safetensors", golden: "ropemixed", tokens: 17, extra: ["--image-size", "32"])
        // With absolute positions too: the learned frequencies make it evident (not DeiT III's).
        try extract("family_ropemixedape.safetensors", golden: "ropemixedape", tokens: 17)
        // timm's rope reg-gap ViT: its trained size in the metadata, the rotary grid rescaled to it.
        try extract("family_ropereggap.safetensors", golden: "ropereggap", tokens: 18)
        // timm's rope ViT with absolute positions too: DeiT III's tensors, so it must be named.
        try extract("family_ropeape.safetensors", golden: "ropeape", tokens: 17, extra: ["--family", "rope-vit"])
        // The 2025 families (make_2025_fixtures.py) from the command line, in timm's and the authors'
        // layouts: EVA-02, EVA-02 CLIP (also EVA-CLIP's names), PE core (timm, Meta), PE spatial
        // (asked: named), AIMv2, DINOv3 with SwiGLU (timm, Facebook).
        for (file, golden, tokens, extra) in [
            ("family_eva02.safetensors", "eva02", 17, [String]()), ("family_eva02_mim.pt", "eva02", 17, []),
            ("family_eva02clip_evaclip.pt", "eva02clip", 17, []),
            ("family_pecore.safetensors", "pecore", 17, []), ("family_pecore_meta.pt", "pecore", 17, []),
            ("family_pespatial_meta.pt", "pespatial", 17, ["--family", "pe"]),
            ("family_aimv2.safetensors", "aimv2", 16, []),
            ("family_dinov3plus.safetensors", "dinov3plus", 21, ["--image-size", "32"]),
            ("family_dinov3plus_fb.pth", "dinov3plus", 21, ["--image-size", "32"]),
            ("family_hf_siglip2vision", "hf_siglip2", 16, []), ("family_hf_siglip2", "hf_siglip2", 16, []),
            ("family_aimv2_apple.pt", "aimv2", 16, []), ("family_hf_aimv2", "hf_aimv2", 16, []),
            ("family_hf_dinov3", "hf_dinov3", 21, []), ("family_hf_dinov3plus", "hf_dinov3plus", 21, []),
        ] {
            try extract(file, golden: golden, tokens: tokens, extra: ["--heads", "2"] + extra)
        }
        try extract("family_clip.safetensors", golden: "clip", tokens: 17, extra: ["--heads", "2", "--family", "clip"])
        try extract("family_clip_openai.pt", golden: "clip", tokens: 17, extra: ["--heads", "2", "--family", "clip"])
        // Hugging Face folders against transformers in float64 (make_hf_clip_fixtures.py): a
        // CLIPVisionModel saved by transformers 5 (no vision_model. prefix) and a full CLIPModel.
        try extract("family_hf_clipvision", golden: "hf_clip", tokens: 17)
        try extract("family_hf_clip", golden: "hf_clip", tokens: 17)
        // DINOv2 against transformers in float64 (make_hf_dinov2_fixtures.py): Dinov2Model and
        // Dinov2WithRegistersModel folders, and the registers model in Facebook's layout
        // (register_tokens, pos_embed with the class token's row only).
        try extract("family_hf_dinov2", golden: "hf_dinov2", tokens: 17)
        try extract("family_hf_dinov2reg", golden: "hf_dinov2reg", tokens: 21)
        try extract("family_dinov2reg_fb.pth", golden: "hf_dinov2reg", tokens: 21, extra: ["--heads", "2"])
        // MAE as Hugging Face publishes it (make_hf_mae_fixtures.py, transformers float64, run
        // unmasked): ViTMAEForPreTraining (decoder ignored) and ViTMAEModel without `vit.`.
        try extract("family_hf_mae_pretraining", golden: "hf_mae", tokens: 17)
        try extract("family_hf_mae", golden: "hf_mae", tokens: 17)
        // SigLIP (no class token, tanh GELU, MAP head ignored), BEiT (q/v biases, a relative position
        // table per block, LayerScale, no absolute positions, fc_norm on every token), BEiT with a
        // shared table, mae-lite's RPE ViT in timm's names and as mae-lite saves it.
        try extract("family_siglip.safetensors", golden: "siglip", tokens: 16)
        try extract("family_beit.safetensors", golden: "beit", tokens: 17)
        try extract("family_beitshared.safetensors", golden: "beitshared", tokens: 17)
        try extract("family_rpe.safetensors", golden: "rpe", tokens: 17)
        try extract("family_rpe_maelite.pth", golden: "rpe", tokens: 17)
        // Hugging Face folders against transformers in float64 (make_hf_siglip_beit_fixtures.py):
        // SiglipVisionModel (transformers 5, no prefix) and SiglipModel (both towers), BeitModel
        // (tables per layer, LayerScale, mean-pooling LayerNorm) and BeitForImageClassification
        // (one shared table, absolute positions).
        try extract("family_hf_siglipvision", golden: "hf_siglip", tokens: 16)
        try extract("family_hf_siglip", golden: "hf_siglip", tokens: 16)
        try extract("family_hf_beit", golden: "hf_beit", tokens: 17)
        try extract("family_hf_beitshared", golden: "hf_beitshared", tokens: 17)
        for (file, layout) in [
            ("family_hf_dinov2reg", "Hugging Face DINOv2"), ("family_dinov2reg_fb.pth", "Facebook DINOv2"),
                               ("family_clip_openai.pt", "OpenAI/OpenCLIP CLIP"),
                                   ("family_hf_clip", "Hugging Face CLIP"),
                               ("family_hf_siglip", "Hugging Face SigLIP"), ("family_hf_beit", "Hugging Face BEiT"),
                               ("family_beit.safetensors", "timm BEiT"), ("family_rpe_maelite.pth", "MAE/mae-lite"),
                               ("family_eva02clip_evaclip.pt", "EVA-CLIP"),
                               ("family_dinov3plus_fb.pth", "Facebook DINOv3"),
                               ("family_hf_siglip2", "Hugging Face SigLIP 2 (NaFlex)"),
                               ("family_aimv2_apple.pt", "Apple AIMv2"), ("family_hf_aimv2", "Hugging Face AIMv2"),
                               ("family_hf_dinov3plus", "Hugging Face DINOv3")] {
            let family = file.contains("clip_openai") ? ["--family", "clip"] : []
            let r = runProcess(CLITests.binary, ["inspect", Fixtures.checkpoint(file), "--heads", "2"] + family)
            XCTAssertTrue(
                r.status == 0 && r.stdout.contains("layout        " + layout), "\(file): \(r.stdout)\(r.stderr)")
        }
    }

    /// Tensors two families share are not run as either: one error line names the candidates
    /// (exit 64), `--family` settles it — one value, or one per model — and inspect says where
    /// the family came from.
    func testFamilyIsAskedNotGuessed() throws {
        let clip = Fixtures.checkpoint("family_clip_openai.pt"), tiny = Fixtures.checkpoint("tiny_f32.safetensors")
        var r = runProcess(CLITests.binary, ["inspect", clip, "--heads", "2"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains("say which with --family clip|pe"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        r = runProcess(CLITests.binary, ["inspect", clip, "--heads", "2", "--family", "pe"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("runs as --family pe, from --family"), r.stdout)
        r = runProcess(CLITests.binary, ["inspect", clip, "--heads", "2", "--family", "clip"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("runs as --family clip, from --family"), r.stdout)
        r = runProcess(CLITests.binary, ["inspect", tiny, "--family", "siglip"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("--family says siglip (SigLIP), but it has a class token"), r.stderr)
        r = runProcess(CLITests.binary, ["inspect", tiny, "--family", "eva"])
        XCTAssertEqual(r.status, 64, r.stderr)
        // DeiT III's tensors saved as timm's Eva saves its rope ViTs with absolute positions: asked;
        // Facebook's DeiT III (the same names under "model") and timm's (ls1.gamma) are evident.
        r = runProcess(CLITests.binary, ["inspect", Fixtures.checkpoint("family_ropeape.safetensors")])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("say which with --family deit3|rope-vit"), r.stderr)
        for file in ["family_deit3_fb.pth", "family_deit3.safetensors"] {
            r = runProcess(CLITests.binary, ["inspect", Fixtures.checkpoint(file), "--heads", "2"])
            XCTAssertTrue(r.status == 0 && r.stdout.contains("runs as --family deit3"), "\(file): \(r.stderr)")
        }
        // One family per model, in order.
        let out = tmp + "/cka-families"
        r = runProcess(CLITests.binary, ["cka", clip, tiny, "--heads", "2", "--family", "clip", "--family", "vit",
                                         "--images", Fixtures.path("images/cka"), "--resize", "none", "--batch", "4",
                                         "--tokens", "mean", "--out", out, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try String(contentsOfFile: out + "/cka.json", encoding: .utf8)
        XCTAssertTrue(json.contains("\"family_source\": \"--family\""), json)
        r = runProcess(CLITests.binary, ["cka", clip, tiny, "--heads", "2", "--family", "clip", "--family", "vit",
                                         "--family", "vit", "--images", Fixtures.path("images/cka")])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("--family: give one value, or one per model (2)"), r.stderr)
    }

    /// A rotary ViT runs every analysis and fine-tunes; `finetune --save` writes timm's Eva names
    /// and the trained size, and the saved file loads again as the same family at that size.
    func testRotaryViTAnalysesAndFineTuning() throws {
        let rope = Fixtures.checkpoint("family_ropevit.safetensors"), images = Fixtures.path("images/cka")
        var r = runProcess(CLITests.binary, ["attention", rope, "--image-size", "32", "--images", images, "--resize",
                                             "none", "--batch", "4", "--out", tmp + "/rope-att", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = runProcess(CLITests.binary, ["cka", rope, "--image-size", "32", "--images", images, "--resize", "none",
                                         "--batch", "4", "--out", tmp + "/rope-cka", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try String(contentsOfFile: tmp + "/rope-cka/cka.json", encoding: .utf8)
        XCTAssertTrue(json.contains("\"family\": \"RoPE ViT (timm)\""), json)
        let saved = tmp + "/rope-ft.safetensors"
        r = runProcess(CLITests.binary, ["finetune", rope, "--image-size", "32", "--train", Fixtures.path("images"),
                                         "--split", "0.5", "--epochs", "1", "--save", saved, "--out", tmp + "/rope-ft",
                                         "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let header = try String(contentsOfFile: saved, encoding: .isoLatin1)
        for k in ["blocks.0.gamma_1", "blocks.1.gamma_2", "\"image_size\":\"32\"", "\"family\":\"rope-vit\""] {
            XCTAssertTrue(header.contains(k), "saved \(k)")
        }
        XCTAssertFalse(header.contains("pos_embed"))
        r = runProcess(CLITests.binary, ["inspect", saved])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("trained at 32 px, from safetensors metadata image_size"), r.stdout)
        r = runProcess(CLITests.binary, ["inspect", rope, "--family", "deit3"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains(
            "it has no position table (rotary positions), which DeiT III has not (rope-vit-mixed, dinov3, rope-vit-gap "
                + "or rope-vit)"), r.stderr)
    }

    /// CLIP as OpenAI and OpenCLIP publish it: the image tower found under visual.*, the text
    /// tower (and visual.proj) listed as ignored, the family named.
    func testCLIPLayout() throws {
        let r = runProcess(
            CLITests.binary,
            ["inspect", Fixtures.checkpoint("family_clip_openai.pt"), "--heads", "2", "--family", "clip", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for want in [
            "\"family\": \"CLIP\"", "\"family_source\": \"--family\"", "OpenAI/OpenCLIP CLIP",
                "\"layer_norm_eps\": 1e-05",
            "\"activation\": \"quick_gelu\"",
                     "\"pre_norm\": true", "\"token_embedding.*\": 1", "\"text_projection\": 1", "\"visual.*\": 1"] {
            XCTAssertTrue(r.stdout.contains(want), "inspect shows \(want): \(r.stdout)")
        }
        let alone = runProcess(CLITests.binary, ["inspect", Fixtures.checkpoint("family_clip_textonly.safetensors")])
        XCTAssertEqual(alone.status, 1, alone.stderr)
        XCTAssertTrue(alone.stderr.hasPrefix("error: ") && alone.stderr.contains("a CLIP state dict without visual.*")
                      && alone.stderr.split(separator: "\n").count == 1, alone.stderr)
    }

    /// The analyses run on every family (prefix tokens — class token and registers — dropped
    /// where patches are asked for).
    func testAnalysesRun() throws {
        let reg = Fixtures.checkpoint("family_dinov2reg.safetensors"),
            deit3 = Fixtures.checkpoint("family_deit3.safetensors")
        let images = Fixtures.path("images/cka")
        var r = runProcess(
            CLITests.binary,
            ["cka", reg, deit3, Fixtures.checkpoint("tiny_f32.safetensors"), "--images", images, "--resize", "none",
                                             "--batch", "4", "--out", tmp + "/cka", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try String(contentsOfFile: tmp + "/cka/cka.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertFalse(rows.isEmpty)
        for row in rows { XCTAssertTrue(Double(row.split(separator: ",")[4])?.isFinite ?? false, String(row)) }
        r = runProcess(
            CLITests.binary,
            ["attention", reg, "--images", images, "--resize", "none", "--out", tmp + "/att", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let att = try String(contentsOfFile: tmp + "/att/attention.json", encoding: .utf8)
        XCTAssertTrue(att.contains("\"register_tokens\": 4"), "the report records the registers")
    }

    /// Fine-tuning every family: `finetune --save` writes the family's timm names (BEiT's q_bias,
    /// v_bias, gamma_1/2 and tables; DINOv2's reg_token and pos_embed rows; CLIP's norm_pre and no
    /// patch bias; SigLIP without cls_token, its activation in the metadata), and the saved file
    /// loads again as the same family and runs.
    func testFinetuneSavesEveryFamily() throws {
        for (file, keys, absent) in [
            ("family_deit3.safetensors", ["blocks.0.ls1.gamma", "pos_embed"], ["patch_embed.norm.weight"]),
                                     ("family_dinov2reg.safetensors", ["reg_token", "blocks.1.ls2.gamma"], []),
                                     ("family_clip_openai.pt", ["norm_pre.weight", "blocks.1.attn.qkv.bias"],
                                         ["patch_embed.proj.bias"]),
                                     ("family_siglip.safetensors", ["pos_embed", "blocks.1.mlp.fc2.bias"],
                                         ["cls_token"]),
                                     ("family_beit.safetensors",
                                         ["blocks.0.attn.q_bias", "blocks.0.attn.v_bias", "blocks.0.gamma_1",
                                                                  "blocks.1.attn.relative_position_bias_table",
                                                                      "fc_norm.weight"],
                                      ["pos_embed", "blocks.0.attn.qkv.bias"]),
                                     ("family_rpe_maelite.pth",
                                         ["pos_embed", "blocks.1.attn.relative_position_bias_table"],
                                         ["blocks.0.gamma_1"])] {
            let saved = tmp + "/" + file + ".safetensors"
            var r = runProcess(
                CLITests.binary,
                ["finetune", Fixtures.checkpoint(file), "--heads", "2"]
                    + (file.contains("clip") ? ["--family", "clip"] : [])
                    + ["--train", Fixtures.path("images"),
                                                 "--split", "0.5", "--epochs", "1", "--pool", "mean", "--save", saved,
                                                 "--out", tmp + "/ft-" + file, "--quiet"])
            XCTAssertEqual(r.status, 0, "\(file): \(r.stderr)")
            let header = try String(contentsOfFile: saved, encoding: .isoLatin1)
            for k in keys { XCTAssertTrue(header.contains("\"\(k)\""), "\(file): saved \(k)") }
            for k in absent { XCTAssertFalse(header.contains("\"\(k)\""), "\(file): no \(k)") }
            let family = file.contains("clip") ? ["--family", "clip"] : []
            let before = runProcess(
                CLITests.binary, ["inspect", Fixtures.checkpoint(file), "--heads", "2", "--json"] + family)
            r = runProcess(CLITests.binary, ["inspect", saved, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            func field(_ json: String, _ key: String) -> String? {
                json.split(separator: "\n").first { $0.contains("\"\(key)\":") }.map(String.init)
            }
            for key in [
                "family", "activation", "relative_position_bias", "register_tokens", "prefix_position_rows",
                "class_token"] {
                XCTAssertEqual(field(r.stdout, key), field(before.stdout, key), "\(file): \(key)")
            }
            r = runProcess(
                CLITests.binary, ["attention", saved, "--images", Fixtures.path("images/cka"), "--resize", "none",
                                             "--out", tmp + "/att-" + file, "--quiet"])
            XCTAssertEqual(r.status, 0, "\(file): \(r.stderr)")
        }
    }

    /// SigLIP (no class token) and BEiT (relative position bias) through every analysis: CKA across
    /// the two families (one patch grid, 16 and 17 tokens), attention and maps without a class
    /// token, the linear probe; what has no meaning is refused in one line.
    func testSigLIPAndBEiTAnalyses() throws {
        let siglip = Fixtures.checkpoint("family_siglip.safetensors"),
            beit = Fixtures.checkpoint("family_beit.safetensors")
        let images = Fixtures.path("images/cka")
        func oneLine(_ args: [String], status: Int32, mentions: String, line: UInt = #line) {
            let r = runProcess(CLITests.binary, args)
            XCTAssertEqual(r.status, status, r.stderr, line: line)
            XCTAssertTrue(
                r.stderr.hasPrefix("error: ") && r.stderr.contains(mentions)
                && r.stderr.split(separator: "\n").count == 1,
                          r.stderr, line: line)
        }
        for tokens in ["patches", "mean"] {
            let r = runProcess(
                CLITests.binary, ["cka", siglip, beit, "--images", images, "--resize", "none", "--batch", "4",
                                                 "--tokens", tokens, "--out", tmp + "/cka-" + tokens, "--quiet"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let rows = try String(contentsOfFile: tmp + "/cka-\(tokens)/cka.csv", encoding: .utf8).split(
                separator: "\n").dropFirst()
            XCTAssertEqual(rows.count, 9, "3 × 3 representations")
            for row in rows {
                XCTAssertTrue(
                Double(row.split(separator: ",")[4]).map { $0 > 0 && $0 <= 1 + 1e-9 } ?? false, String(row)) }
        }
        // Across grids (SigLIP's 4×4 patches, a patch-4 ViT's 8×8): the mean token compares, patches cannot.
        let p4 = Fixtures.checkpoint("tiny_p4_f32.safetensors")
        var r = runProcess(
            CLITests.binary,
            ["cka", siglip, p4, "--images", images, "--resize", "none", "--batch", "4", "--tokens", "mean",
                                             "--out", tmp + "/cka-grids", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        oneLine([
            "cka", siglip, p4, "--images", images, "--resize", "none", "--tokens", "patches", "--out", tmp + "/x0"],
            status: 64,
                mentions: "one token grid")
        // Shards of a cross-family run merge into the single run's report, byte for byte.
        for (i, dir) in ["0/2", "1/2"].enumerated() {
            r = runProcess(
                CLITests.binary,
                ["cka", siglip, beit, "--images", images, "--resize", "none", "--batch", "4", "--shard", dir,
                                             "--out", tmp + "/shard\(i)", "--quiet"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        r = runProcess(
            CLITests.binary, ["merge", tmp + "/shard0", tmp + "/shard1", "--out", tmp + "/merged", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try String(contentsOfFile: tmp + "/merged/cka.csv", encoding: .utf8),
                       try String(contentsOfFile: tmp + "/cka-patches/cka.csv", encoding: .utf8))
        r = runProcess(
            CLITests.binary,
            ["attention", siglip, beit, "--images", images, "--resize", "none", "--out", tmp + "/att", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = runProcess(
            CLITests.binary,
            ["maps", siglip, "--images", images, "--resize", "none", "--num", "4", "--out", tmp + "/maps", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let maps = try String(contentsOfFile: tmp + "/maps/maps.json", encoding: .utf8)
        XCTAssertTrue(maps.contains("\"family\": \"SigLIP-style\""), maps)
        let svg = try String(contentsOfFile: tmp + "/maps/maps.svg", encoding: .utf8)
        XCTAssertTrue(
            svg.contains("no class token: query mean → patches") && !svg.contains("class token → patches"),
            "the subtitle says what is drawn")
        r = runProcess(
            CLITests.binary,
            ["probe", beit, siglip, "--train", Fixtures.path("images"), "--split", "0.5", "--pool", "mean",
                                         "--out", tmp + "/probe", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = runProcess(CLITests.binary, ["inspect", siglip, "--json"])
        for want in ["\"class_token\": false", "\"activation\": \"gelu_pytorch_tanh\"", "\"attn_pool.*\""] {
            XCTAssertTrue(r.stdout.contains(want), "inspect shows \(want): \(r.stdout)")
        }
        r = runProcess(CLITests.binary, ["inspect", beit, "--json"])
        // Parameters as timm's state dict counts them without the head (BEiT: q and v biases only).
        for want in [
            "\"relative_position_bias\": \"per block\"", "\"absolute_positions\": false",
            "\"heads_source\": \"the relative position table's columns\"",
                     "\"parameters\": 7824"] {
            XCTAssertTrue(r.stdout.contains(want), "inspect shows \(want): \(r.stdout)")
        }
        // Class-token selections on a model without one: bad usage.
        oneLine(["cka", siglip, beit, "--images", images, "--resize", "none", "--tokens", "cls", "--out", tmp + "/x1"],
            status: 64, mentions: "has no class token")
        oneLine(["extract", siglip, "--images", images, "--resize", "none", "--tokens", "cls", "--out", tmp + "/x2"],
            status: 64, mentions: "has no class token")
        oneLine([
            "probe", siglip, "--train", Fixtures.path("images"), "--split", "0.5", "--pool", "cls", "--out", tmp
            + "/x3"], status: 64,
                mentions: "has no class token")
        // The relative position tables fix the head count.
        oneLine(["extract", beit, "--images", images, "--heads", "4", "--out", tmp + "/x5"], status: 64,
            mentions: "relative position tables have 2 heads")
        // Damaged files: a stored index that is not BEiT's, a table of the wrong size.
        oneLine(["inspect", Fixtures.checkpoint("family_rpe_badindex.safetensors")], status: 1,
            mentions: "differs from the index BEiT builds")
        oneLine(["inspect", Fixtures.checkpoint("family_rpe_badtable.safetensors")], status: 1,
            mentions: "relative_position_bias_table")
        oneLine([
            "finetune", siglip, "--train", Fixtures.path("images"), "--split", "0.5", "--pool", "cls", "--out", tmp
            + "/ft2"], status: 64,
                mentions: "has no class token")
    }

    /// A register count that disagrees with pos_embed is refused in one line.
    func testInconsistentFamiliesAreRefused() throws {
        // pos_embed cut to 15 rows, with 4 registers: neither 5 + a square, nor a square, nor the
        // class token's row + a square (17 rows with 4 registers is Facebook's layout and loads).
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.checkpoint("family_dinov2.safetensors")))
        let n = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + n))) as! [String: Any]
        let end = (header.values.compactMap { ($0 as? [String: Any])?["data_offsets"] as? [Int] }.map { $0[1] }.max())!
        header["reg_token"] = ["dtype": "F32", "shape": [1, 4, 16], "data_offsets": [end, end + 256]]
        var pos = header["pos_embed"] as! [String: Any]
        let start = (pos["data_offsets"] as! [Int])[0]
        (pos["shape"], pos["data_offsets"]) = ([1, 15, 16], [start, start + 15 * 16 * 4])
        header["pos_embed"] = pos
        var h = try JSONSerialization.data(withJSONObject: header)
        while h.count % 8 != 0 { h.append(0x20) }
        var file = Data(withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) })
        file.append(h)
        file.append(bytes.subdata(in: (8 + n)..<bytes.count).prefix(end))
        file.append(Data(count: 256))
        try file.write(to: URL(fileURLWithPath: tmp + "/badreg.safetensors"))
        let r = runProcess(CLITests.binary, ["inspect", tmp + "/badreg.safetensors"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains("pos_embed holds 15 rows"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
    }
}
