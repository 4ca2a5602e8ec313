// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for vitlens's readers. Built by `make fuzz` with
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld
// (libFuzzer supplies `main`; gold cannot link it, lld can).
let package = Package(
    name: "vitlens-fuzz",
    dependencies: [.package(name: "vitlens", path: "..")],
    targets: [
        .executableTarget(name: "vitlens-fuzz", dependencies: [.product(name: "VitLensReaders", package: "vitlens")],
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
    ],
    swiftLanguageModes: [.v5]
)
