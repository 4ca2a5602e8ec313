// swift-tools-version:6.0
import PackageDescription

// Optimised even in debug builds: the engine's loops are far too slow unoptimised for the
// parity tests to run in a reasonable time. Only the modules whose hot loops need it drop the
// bounds and overflow checks (kernels, engine, analysis, training); the readers of bytes that
// come from outside (checkpoints, .npy, images, reports) and the application keep them, so a
// hostile file traps on a check the fuzzers find instead of reading out of bounds.
let fast: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"])]
let checked: [SwiftSetting] = [.unsafeFlags(["-O"])]

// KernelsAVX2 is compiled for Haswell-class x86-64 (AVX2 + FMA) and only called on CPUs that
// have it; elsewhere (other architectures) it is an ordinary build that is never called.
#if arch(x86_64)
let avx2: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-target-cpu", "haswell"])]
#else
let avx2: [SwiftSetting] = fast
#endif

let package = Package(
    name: "vitlens",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "vitlens", targets: ["vitlens"]),
        // The readers, for the fuzz targets in Fuzz/ (a package of their own: they link libFuzzer).
        .library(name: "VitLensReaders", targets: ["Checkpoint", "Images"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CFreeType", path: "Sources/CFreeType", pkgConfig: "freetype2",
                       providers: [.apt(["libfreetype-dev"])]),
        // SHA-256 of checkpoints, arrays and image lists (OpenSSL's libcrypto).
        .systemLibrary(name: "CCrypto", path: "Sources/CCrypto", pkgConfig: "libcrypto",
                       providers: [.apt(["libssl-dev"])]),
        .target(name: "VitLensCore", dependencies: ["CBLAS"], swiftSettings: fast),
        .target(name: "Checkpoint", dependencies: ["VitLensCore", "KernelsAVX2"], swiftSettings: checked),
        .target(name: "Images", dependencies: ["VitLensCore", "CPNG", "CJPEG"], swiftSettings: checked),
        // The element-wise kernels again, for AVX2 + FMA; chosen at run time (CPUKernels.avx2).
        .target(name: "KernelsAVX2", dependencies: ["VitLensCore"],
                swiftSettings: avx2),
        // bf16 linear layers through oneDNN (dlopen'ed on first use; headers from libdnnl-dev).
        .target(name: "BF16", cSettings: [.unsafeFlags(["-O3"])], linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "Engine", dependencies: ["VitLensCore", "KernelsAVX2", "BF16"], swiftSettings: fast),
        // The model families: how a checkpoint's tensors become an architecture (Engine), never guessed.
        .target(name: "Families", dependencies: ["VitLensCore", "Checkpoint", "Engine"], swiftSettings: checked),
        .target(name: "Analysis", dependencies: ["VitLensCore", "KernelsAVX2"], swiftSettings: fast),
        .target(name: "Render", dependencies: ["VitLensCore", "CPNG", "CJPEG", "CFreeType"], swiftSettings: checked),
        .target(name: "Train", dependencies: ["VitLensCore", "Engine"], swiftSettings: fast),
        // The application layer: models loaded for analysis, the batch loop, each command's run
        // loop, typed results with their CSV/JSON/NPY files, figures drawn from them, shards.
        .target(name: "Lens", dependencies: [
            "VitLensCore", "Checkpoint", "Families", "Images", "Engine", "Analysis", "Render", "Train", "CCrypto",
        ], swiftSettings: checked),
        .executableTarget(name: "vitlens", dependencies: [
            "Lens", "VitLensCore", "Checkpoint", "Families", "Images", "Engine", "Analysis", "Render", "Train",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "TestSupport", dependencies: ["VitLensCore"], path: "Tests/TestSupport"),
        .testTarget(name: "VitLensCoreTests", dependencies: ["VitLensCore", "TestSupport"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "VitLensCore", "TestSupport"]),
        .testTarget(name: "ImagesTests", dependencies: ["Images", "VitLensCore", "TestSupport"]),
        .testTarget(name: "EngineTests", dependencies: [
            "Engine", "Families", "KernelsAVX2", "Checkpoint", "Images", "VitLensCore", "TestSupport"]),
        .testTarget(name: "AnalysisTests", dependencies: ["Analysis", "VitLensCore", "TestSupport"]),
        .testTarget(name: "TrainTests", dependencies: ["Train", "Engine", "Families", "Checkpoint", "VitLensCore", "TestSupport"]),
        .testTarget(name: "RenderTests", dependencies: ["Render", "Lens", "Images", "Analysis", "Engine", "Train", "VitLensCore", "TestSupport"]),
        .testTarget(name: "LensTests", dependencies: ["Lens", "Analysis", "Engine", "Images", "Train", "VitLensCore", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["VitLensCore", "Lens", "Render", "Analysis", "Engine", "Images", "Train", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
