import Foundation

/// A self-contained report page (`index.html`): inline CSS, figures as inline SVG with a link to
/// the PNG beside it, tables and definitions; no script, no network, opens offline.
public struct HTMLPage {
    public enum Block {
        case heading(String)
        case paragraph(String)
        case figure(svg: String, png: String, caption: String)
        /// A table; `colors[r][c]`, when given, fills that cell (the CKA matrix).
        case table(caption: String, header: [String], rows: [[String]], colors: [[Color?]]?)
        case keyValues(caption: String, [(String, String)])
    }

    public var title: String
    public var blocks: [Block] = []

    public init(title: String) { self.title = title }

    public mutating func add(_ b: Block) { blocks.append(b) }

    public func render() -> String {
        var o = """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(xmlEscape(title))</title>
        <style>
        body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; \
        padding: 0 1em; }
        h1 { font-size: 1.5em; margin-bottom: 0.2em; }
        h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
        figure { margin: 1em 0; }
        figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
        figcaption { font-size: 0.9em; color: #555; }
        table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
        th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; font-variant-numeric: tabular-nums; }
        th { background: #f4f4f4; }
        td.k { text-align: left; font-weight: bold; white-space: nowrap; }
        td.v { text-align: left; word-break: break-all; }
        caption { caption-side: top; text-align: left; color: #555; padding-bottom: 0.3em; }
        .scroll { overflow-x: auto; }
        </style>
        </head>
        <body>
        <h1>\(xmlEscape(title))</h1>

        """
        for b in blocks {
            switch b {
            case let .heading(s):
                o += "<h2>\(xmlEscape(s))</h2>\n"
            case let .paragraph(s):
                o += "<p>\(xmlEscape(s))</p>\n"
            case let .figure(svg, png, caption):
                // The SVG is inlined (self-contained); the XML declaration-free <svg> is valid HTML5.
                o += "<figure>\n\(svg)<figcaption>\(xmlEscape(caption)) (<a "
                    + "href=\"\(xmlEscape(png))\">PNG</a>)</figcaption>\n</figure>\n"
            case let .table(caption, header, rows, colors):
                o += "<div class=\"scroll\"><table>\n<caption>\(xmlEscape(caption))</caption>\n<tr>"
                o += header.map { "<th>\(xmlEscape($0))</th>" }.joined() + "</tr>\n"
                for (r, row) in rows.enumerated() {
                    o += "<tr>"
                    for (c, cell) in row.enumerated() {
                        if let col = colors?[r][c] {
                            let light = 0.299 * Double(col.r) + 0.587 * Double(col.g) + 0.114 * Double(col.b) > 140
                            let ink = light ? "#000" : "#fff"
                            o += "<td style=\"background:\(col.hex);color:\(ink)\">\(xmlEscape(cell))</td>"
                        } else {
                            o += "<td>\(xmlEscape(cell))</td>"
                        }
                    }
                    o += "</tr>\n"
                }
                o += "</table></div>\n"
            case let .keyValues(caption, pairs):
                o += "<table>\n<caption>\(xmlEscape(caption))</caption>\n"
                for (k, v) in pairs {
                    o += "<tr><td class=\"k\">\(xmlEscape(k))</td><td class=\"v\">\(xmlEscape(v))</td></tr>\n" }
                o += "</table>\n"
            }
        }
        return o + "</body>\n</html>\n"
    }
}
