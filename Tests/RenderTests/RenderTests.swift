import Analysis
import Engine
import Foundation
import Images
import Lens
import Render
import TestSupport
import Train
import VitLensCore
import XCTest

final class ColormapTests: XCTestCase {
    /// Colour-map goldens from matplotlib (scripts/make_colormap.py): `cmap(v, bytes=True)`, exact.
    func testMagmaMatchesMatplotlibExactly() throws {
        let g = try JSONValue.parse(String(contentsOfFile: Fixtures.path("magma_golden.json"), encoding: .utf8))
        guard case let .array(vals)? = g["values"],
            case let .array(rgba)? = g["rgba_bytes"] else { return XCTFail("golden malformed") }
        XCTAssertEqual(vals.count, rgba.count)
        for (v, c) in zip(vals, rgba) {
            guard case let .double(x) = v, case let .array(ch) = c else { return XCTFail("golden malformed") }
            let want = ch.prefix(3).map { $0.intValue ?? -1 }
            let got = Magma.color(x)
            XCTAssertEqual([Int(got.r), Int(got.g), Int(got.b)], want, "magma(\(x))")
        }
        // End points and mid point named explicitly.
        XCTAssertEqual(Magma.color(0), Color(0, 0, 3))
        XCTAssertEqual(Magma.color(1), Color(251, 252, 191))
        XCTAssertEqual(Magma.color(0.5), Color(182, 54, 121))
        // Out of range clips to the ends (matplotlib's default under/over); NaN has no colour.
        XCTAssertEqual(Magma.color(-3, vmin: 0, vmax: 1), Magma.color(0))
        XCTAssertEqual(Magma.color(7, vmin: 0, vmax: 1), Magma.color(1))
        XCTAssertNil(Magma.color(.nan, vmin: 0, vmax: 1))
    }

    func testNiceTicks() {
        XCTAssertEqual(niceTicks(0, 1, maxCount: 6), [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1])
        XCTAssertEqual(niceTicks(0, 250, maxCount: 7).map { Int($0) }, [0, 50, 100, 150, 200, 250])
        XCTAssertEqual(tickLabel(0.6000000000000001, step: 0.2), "0.6")
        XCTAssertEqual(tickLabel(2.5, step: 2.5), "2.5")
        XCTAssertEqual(niceCeiling(5.278), 6)
        XCTAssertEqual(niceCeiling(226.4), 250)
    }
}

final class FigureTests: XCTestCase {
    func sampleHeatmap() -> Heatmap {
        let v: [[Double]] = [
            [0.0, 0.25, 0.5, 0.75, 1.0], [0.1, .nan, 0.3, 0.9, 0.6], [1.2, -0.2, 0.45, 0.55, 0.05],
            [0.33, 0.66, 0.99, 0.01, 0.5]]
        return Heatmap(
            values: v, rowTitle: "alpha: layer", columnTitle: "beta: layer", title: "CKA: alpha vs beta",
            subtitle: "N = 8 images")
    }

    /// The pixel at the centre of cell (i, j) has the magma colour of its value, layer 0 at the bottom.
    func testHeatmapCellColours() throws {
        let h = sampleHeatmap()
        let c = h.figure().raster()
        XCTAssertGreaterThanOrEqual(c.width, 800)
        XCTAssertGreaterThanOrEqual(c.height, 600)
        for i in 0..<h.rows {
            for j in 0..<h.columns {
                let (x0, y0, x1, y1) = h.cellRect(i, j)
                // Off the centre for NaN cells, whose hatch runs along the anti-diagonal.
                let px = Int(x0 + (x1 - x0) * 0.3), py = Int(y0 + (y1 - y0) * 0.3)
                let want = Magma.color(h.values[i][j], vmin: 0, vmax: 1) ?? Magma.undefined
                XCTAssertEqual(
                    c.pixel(px, py), want, "cell (\(i), \(j)) value \(h.values[i][j]) at pixel (\(px), \(py))")
            }
        }
        // Row 0 is the bottom row: its cell lies below row 3's.
        XCTAssertGreaterThan(h.cellRect(0, 0).1, h.cellRect(3, 0).1)
        XCTAssertEqual(h.undefinedCells.map { [$0.0, $0.1] }, [[1, 1]])
    }

    /// Colour bar, tick labels and titles are drawn: dark pixels in the margins, colour-bar bands
    /// from vmin at the bottom to vmax at the top, and `<text>` elements with the expected strings.
    func testHeatmapLabelsAndColourBar() throws {
        let h = sampleHeatmap()
        let fig = h.figure()
        let c = fig.raster()
        func darkPixels(_ xs: Range<Int>, _ ys: Range<Int>) -> Int {
            var n = 0
            for y in ys { for x in xs { let p = c.pixel(x, y); if Int(p.r) + Int(p.g) + Int(p.b) < 300 { n += 1 } } }
            return n
        }
        let left = Int(Heatmap.plotLeft), top = Int(Heatmap.plotTop), side = Int(Heatmap.plotSide)
        XCTAssertGreaterThan(darkPixels(0..<(left - 2), top..<(top + side)), 200, "row tick labels and axis title")
        XCTAssertGreaterThan(
            darkPixels(left..<(left + side), (top + side + 2)..<(top + side + 60)), 200, "column tick labels and title")
        XCTAssertGreaterThan(darkPixels(0..<c.width, 0..<(top - 5)), 300, "title")
        let cbX = left + side + 41
        XCTAssertEqual(c.pixel(cbX, top + side - 2), Magma.color(0.5 / 256), "colour bar bottom = vmin")
        XCTAssertEqual(c.pixel(cbX, top + 1), Magma.color(255.5 / 256), "colour bar top = vmax")
        XCTAssertGreaterThan(
            darkPixels((left + side + 58)..<c.width, top..<(top + side)), 200, "colour-bar ticks and label")
        let svg = fig.svg()
        for s in [
            "CKA: alpha vs beta", "N = 8 images", "alpha: layer", "beta: layer", "0.0", "0.2", "1.0", ">CKA<", ">3<",
            ">4<"] {
            XCTAssertTrue(svg.contains(s), "SVG lacks \(s)")
        }
        XCTAssertEqual(svg.components(separatedBy: "<text").count - 1, fig.texts.count)
        XCTAssertTrue(
            fig.texts.contains { $0.hasPrefix("undefined (NaN), 1 cell (row, column): (1, 1)") },
            "NaN cells listed: \(fig.texts)")
        XCTAssertTrue(svg.contains(Magma.undefined.hex), "NaN colour in the SVG")
    }

    /// Box edges, median and whisker caps at the pixel heights of their values.
    func testBoxChartPixelHeights() throws {
        let box = BoxSummary(q1: 40, median: 55, q3: 80, whiskerLow: 20, whiskerHigh: 110, outliers: [150])
        let flat = BoxSummary(q1: 10, median: 10, q3: 10, whiskerLow: 10, whiskerHigh: 10)
        let s = BoxSeries(
            name: "m", color: seriesColors[0], boxes: [box, flat, flat], points: [[50, 60], [10], [10]],
            means: [55, 10, 10])
        let chart = BoxChart(
            series: [s], xLabels: ["1", "2", "3"], yTitle: "distance (pixels)", yRange: (0, 200), title: "t",
            subtitle: "s")
        let c = chart.figure().raster()
        let cx = chart.boxCenter(0, series: 0)
        let x = Int(cx - 0.45 * (530.0 / 3) * 0.55)  // inside the box, left of the head points
        let fill = c.pixel(x, Int(chart.yPixel(60)))
        var rows: [Int] = []
        for y in 0..<c.height where c.pixel(x, y) == fill { rows.append(y) }
        // The fill spans q3…q1 (less the 1-pixel strokes and the 2-pixel median band).
        let top = rows.min()!, bottom = rows.max()!
        XCTAssertEqual(Double(top), chart.yPixel(80) + 1, accuracy: 1.01, "q3 edge")
        XCTAssertEqual(Double(bottom), chart.yPixel(40) - 1, accuracy: 1.01, "q1 edge")
        let medianColor = c.pixel(x, Int(chart.yPixel(55)))
        XCTAssertNotEqual(medianColor, fill, "median line drawn at its height")
        // Whisker cap rows: the edge colour at whisker heights on the centre column.
        let edge = c.pixel(Int(cx), Int(chart.yPixel(95)))
        XCTAssertNotEqual(edge, .white, "whisker between q3 and the high whisker")
        XCTAssertEqual(
            c.pixel(Int(cx), Int(chart.yPixel(125))), .white, "nothing between the whisker cap and the outlier")
        XCTAssertEqual(c.pixel(Int(cx) + 12, Int(chart.yPixel(110).rounded(.down))), edge, "cap at the high whisker")
        XCTAssertEqual(c.pixel(Int(cx) + 12, Int(chart.yPixel(20).rounded(.down))), edge, "cap at the low whisker")
        XCTAssertEqual(chart.yPixel(0), 528)
        XCTAssertEqual(chart.yPixel(200), 78)
    }

    func testNaNValuesNeverCrash() throws {
        var h = sampleHeatmap()
        h.values = [[.nan, .nan], [.nan, .infinity]]
        let fig = h.figure()
        _ = try fig.raster().png()
        let chart = LineChart(
            series: [LineSeries(name: "a", color: seriesColors[0], xs: [0, 1, 2], ys: [.nan, 0.5, .nan])],
                              xLabels: ["1", "2", "3"], xTitle: "layers kept", yTitle: "accuracy", yRange: (0, 1),
                                  title: "t", subtitle: "s")
        _ = try chart.figure().raster(scale: 2).png()
    }

    /// A small figure against its committed snapshot (SVG exactly, PNG pixels within a tolerance
    /// for FreeType rounding). Re-record with `make snapshots` (VITLENS_RECORD_SNAPSHOTS=1).
    func testSnapshot() throws {
        var h = sampleHeatmap()
        h.vmin = 0
        h.vmax = 1
        let fig = h.figure()
        let svgPath = Fixtures.path("snapshots/heatmap.svg"), pngPath = Fixtures.path("snapshots/heatmap.png")
        let png = try fig.raster(scale: 0.5).png()
        if ProcessInfo.processInfo.environment["VITLENS_RECORD_SNAPSHOTS"] == "1" {
            try fig.svg().write(toFile: svgPath, atomically: true, encoding: .utf8)
            try Data(png).write(to: URL(fileURLWithPath: pngPath))
            throw XCTSkip("snapshots recorded")
        }
        XCTAssertEqual(try String(contentsOfFile: svgPath, encoding: .utf8), fig.svg(), "SVG differs from the snapshot")
        let want = try DecodedImage.load(path: pngPath)
        let got = try png.withUnsafeBytes { try DecodedImage.decode($0, path: "rendered") }
        XCTAssertEqual([got.width, got.height], [want.width, want.height])
        guard got.width == want.width, got.height == want.height else { return }
        var bad = 0, worst = 0
        for k in 0..<min(got.pixels.count, want.pixels.count) {
            let d = abs(Int(got.pixels[k]) - Int(want.pixels[k]))
            worst = max(worst, d)
            if d > 8 { bad += 1 }
        }
        XCTAssertLessThan(
            Double(bad) / Double(got.pixels.count), 0.002,
            "\(bad) channel values differ by more than 8 (worst \(worst))")
    }
}

final class CSVTests: XCTestCase {
    func testRoundTripWithQuoting() throws {
        var t = CSVTable(header: ["model", "layer", "value"])
        t.append(["a,b", "1", csvNumber(0.1 + 0.2)])
        t.append(["say \"hi\"", "2", csvNumber(.nan)])
        t.append(["line\nbreak", "3", csvNumber(Double(Float(1) / 3))])
        let text = t.render()
        XCTAssertTrue(text.hasPrefix("model,layer,value\n\"a,b\",1,0.3\n"), text)
        let back = try CSVTable.parse(text, path: "t.csv")
        XCTAssertEqual(back, t)
        XCTAssertEqual(Float(try back.number(2, "value", path: "t.csv")), Float(1) / 3, "float32 round trip")
        XCTAssertTrue(try back.number(1, "value", path: "t.csv").isNaN)
        XCTAssertEqual(try CSVTable.parse("a,b\r\n1,2\r\n", path: "crlf").rows, [["1", "2"]])
    }

    func testMalformedCSV() {
        for (text, fragment) in [
            ("", "empty CSV"), ("a,b\n1\n", "1 fields, the header has 2"), ("a,b\n\"x,2\n", "unterminated"),
                                 ("a,b\nx\"y\",2\n", "stray quote"), ("a,b\n\"x\"y,2\n", "after a closing quote")] {
            XCTAssertThrowsError(try CSVTable.parse(text, path: "bad.csv")) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(e) should mention \(fragment)")
                XCTAssertTrue("\(e)".hasPrefix("bad.csv"), "\(e) names the file")
            }
        }
    }
}

/// Long model names are laid out, not cut off: every text mark stays inside the canvas, and
/// legend entries of different models stay different.
final class LongNameTests: XCTestCase {
    func extents(_ fig: Figure) -> [(String, Double, Double)] {
        fig.marks.compactMap { m -> (String, Double, Double)? in
            guard case let .text(s, x, _, size, _, anchor, rotated, _) = m, !rotated else { return nil }
            let w = textWidth(s, size: size)
            switch anchor {
            case .start: return (s, x, x + w)
            case .end: return (s, x - w, x)
            case .middle: return (s, x - w / 2, x + w / 2)
            }
        }
    }

    func testSixtyCharacterNamesFit() {
        let a = "mae_tiny_400e_pretrained_on_imagenet1k_seed0_final_checkpoin"   // 60 characters
        let b = "mae_tiny_400e_pretrained_on_imagenet1k_seed1_final_checkpoin"
        XCTAssertEqual(a.count, 60)
        let h = Heatmap(
            values: [[1, 0.5], [0.5, 1]], rowTitle: "\(a): layer", columnTitle: "\(b): layer",
            title: "CKA: \(a) vs \(b)", subtitle: "N = 1024 images · minibatch 64")
        let box = BoxChart(
            series: [BoxSeries(name: a, color: seriesColors[0], boxes: [], points: [[1, 2]], means: [1.5]),
                                    BoxSeries(
                                        name: b, color: seriesColors[1], boxes: [], points: [[1, 2]], means: [1.5])],
                           xLabels: ["1"], yTitle: "distance", yRange: (0, 3),
                               title: "Attention distance: \(a) vs \(b)", subtitle: "s")
        let line = LineChart(series: [LineSeries(name: "\(a) test", color: seriesColors[0], xs: [0], ys: [0.5]),
                                      LineSeries(name: "\(b) test", color: seriesColors[1], xs: [0], ys: [0.6])],
                             xLabels: ["1"], xTitle: "k", yTitle: "accuracy", yRange: (0, 1),
                                 title: "Probe: \(a) vs \(b)", subtitle: "s")
        for fig in [h.figure(), box.figure(), line.figure()] {
            for (s, lo, hi) in extents(fig) {
                XCTAssertGreaterThanOrEqual(lo, 0, "'\(s)' starts off the canvas")
                XCTAssertLessThanOrEqual(hi, fig.width, "'\(s)' runs off the canvas (\(hi) > \(fig.width))")
            }
            let svg = fig.svg()
            XCTAssertTrue(svg.contains("viewBox=\"0 0 "), "view box")
        }
        let legend = uniquelyFitted(["\(a) test", "\(b) test", "\(a) train"], width: 160, size: 12.5)
        XCTAssertEqual(Set(legend).count, 3, "\(legend)")
        for l in legend { XCTAssertLessThanOrEqual(textWidth(l, size: 12.5), 160, l) }
        XCTAssertEqual(uniquelyFitted(["short", "short"], width: 160, size: 12.5), ["short", "short"])
    }
}
