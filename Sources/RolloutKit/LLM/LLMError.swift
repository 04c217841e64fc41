/// Why a model call produced no usable response: what the server said, or what was wrong with
/// the bytes it sent. It carries the HTTP status and the server's own message, never request
/// headers, and the secrets in use and key-like tokens in a server message are masked, so it is
/// safe to log and store.
public struct LLMError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// The body is not JSON (and is neither empty, HTML nor cut short).
        case invalidJSON
        /// A well-formed reply without the list the answer is read from (OpenAI `choices`,
        /// Anthropic `content`).
        case missingChoices
        /// The server said no: an error object, or a non-2xx status.
        case apiError
        /// An HTML page (a proxy's or gateway's error page) where JSON was expected.
        case htmlErrorPage
        /// No bytes at all (or only whitespace).
        case emptyBody
        /// The bytes are not valid UTF-8.
        case invalidUTF8
        /// The JSON (or the event stream) stops before it is complete.
        case truncatedBody
        /// JSON of the wrong shape: a field of the wrong type, a tool call without a name.
        case unexpectedShape
        /// No full response: the connection failed, was closed, or timed out.
        case connection
    }

    public var kind: Kind
    /// The HTTP status of the response, when there was one.
    public var status: Int?
    /// The server's message (`error.message`) or what was wrong with the body.
    public var message: String
    /// The server's error type (`invalid_request_error`, `overloaded_error`, …).
    public var errorType: String?
    /// The server's error code, as text (`400`, `rate_limit_exceeded`, …).
    public var code: String?

    public init(_ kind: Kind, status: Int? = nil, message: String, errorType: String? = nil, code: String? = nil) {
        self.kind = kind
        self.status = status
        self.message = Self.maskingSecrets(message)
        self.errorType = errorType
        self.code = code
    }

    /// Whether sending the same request again may succeed: HTTP 408, 409, 429 and every 5xx.
    /// Other 4xx are the request's fault. An error object inside a 2xx response (or a stream)
    /// is judged by its numeric `code` when it has one (OpenRouter sends `{"error":{"code":502}}`
    /// with HTTP 200); without a status the error is not retryable.
    public var retryable: Bool {
        if let status, !(200..<300).contains(status) { return Self.isRetryable(status: status) }
        if kind == .apiError, let code, let number = Int(code) { return Self.isRetryable(status: number) }
        return false
    }

    /// The retry rule for an HTTP status on its own.
    public static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 409 || status == 429 || (500..<600).contains(status)
    }

    public var description: String {
        let headline: String = switch kind {
        case .invalidJSON: "response is not valid JSON"
        case .missingChoices: "response has no choices"
        case .apiError: "API error"
        case .htmlErrorPage: "HTML page instead of JSON (a proxy or gateway answered)"
        case .emptyBody: "empty response body"
        case .invalidUTF8: "response is not valid UTF-8"
        case .truncatedBody: "response is cut short"
        case .unexpectedShape: "response has an unexpected shape"
        case .connection: "no response"
        }
        var details: [String] = []
        if let status { details.append("HTTP \(status)") }
        if let errorType { details.append(errorType) }
        if let code, code != status.map(String.init) { details.append("code \(code)") }
        let context = details.isEmpty ? "" : " (\(details.joined(separator: ", ")))"
        return message.isEmpty ? headline + context : "\(headline)\(context): \(message)"
    }

    // MARK: - Secrets

    /// The server's text with secrets in use and credential-shaped tokens masked (`Secrets`):
    /// a 401 that echoes the key (`Incorrect API key provided: …`) must not carry it on.
    static func maskingSecrets(_ text: String) -> String { Secrets.mask(text) }
}

// MARK: - Shared wire helpers of the codecs

/// Reading response bodies the same way for every provider.
enum LLMWire {
    /// The top-level object of a successful reply: parse errors, error objects, non-2xx
    /// statuses and non-object bodies are thrown; both codecs start here.
    static func successObject(_ body: [UInt8], status: Int) throws(LLMError) -> JSONObject {
        let value = try parseBody(body, status: status)
        if let error = apiError(in: value, status: status) { throw error }
        guard isSuccess(status) else {
            throw LLMError(.apiError, status: status, message: excerpt(value.jsonText))
        }
        guard case .object(let root) = value else {
            throw LLMError(.unexpectedShape, status: status, message: "expected a JSON object, found \(value.typeName)")
        }
        return root
    }

    static func isSuccess(_ status: Int?) -> Bool { status.map { (200..<300).contains($0) } ?? true }

    /// Parses a response body as one JSON value, or says precisely why it is not one: empty,
    /// an HTML page, not UTF-8, cut short, or malformed. A non-2xx body that is not JSON is an
    /// `apiError` carrying an excerpt of the text (plain-text gateway errors).
    static func parseBody(_ body: [UInt8], status: Int?) throws(LLMError) -> JSONValue {
        var start = 0
        if body.count >= 3 && body[0] == 0xEF && body[1] == 0xBB && body[2] == 0xBF { start = 3 }
        while start < body.count, isSpace(body[start]) { start += 1 }
        var end = body.count
        while end > start, isSpace(body[end - 1]) { end -= 1 }
        guard start < end else {
            throw LLMError(.emptyBody, status: status, message: "")
        }
        if body[start] == UInt8(ascii: "<") {
            throw LLMError(.htmlErrorPage, status: status, message: htmlSummary(Array(body[start..<end])))
        }
        let bytes = Array(body[start..<end])
        if let bad = bytes.withUnsafeBytes({ $0.firstInvalidUTF8Offset() }) {
            if !isSuccess(status) {
                throw LLMError(.apiError, status: status, message: excerpt(String(decoding: bytes, as: UTF8.self)))
            }
            throw LLMError(.invalidUTF8, status: status, message: "invalid UTF-8 at byte \(start + bad + 1)")
        }
        switch bytes.withUnsafeBytes({ JSONParser.result($0) }) {
        case .success(let value):
            return value
        case .failure(let error):
            let text = String(decoding: bytes, as: UTF8.self)
            if !isSuccess(status) { throw LLMError(.apiError, status: status, message: excerpt(text)) }
            if error.offset >= bytes.count {
                throw LLMError(.truncatedBody, status: status,
                               message: "the JSON ends after \(bytes.count) bytes, before the value is complete")
            }
            throw LLMError(.invalidJSON, status: status,
                           message: "malformed JSON at byte \(start + error.offset + 1): \(error.reason) — \(excerpt(text))")
        }
    }

    /// The `error` member of a response as an `LLMError`, or nil when there is none.
    /// Understands `{"error":{"message","type","code"}}`, `{"error":"text"}`, vLLM's
    /// `{"object":"error","message",…}` and FastAPI's `{"detail":…}` (the last two only on non-2xx).
    static func apiError(in value: JSONValue, status: Int?) -> LLMError? {
        switch value["error"] {
        case .object(let e)?:
            let message = e["message"]?.stringValue ?? e["message"].map { $0.scalarText ?? $0.jsonText } ?? JSONValue.object(e).jsonText
            return LLMError(.apiError, status: status, message: message,
                            errorType: e["type"]?.stringValue, code: e["code"].flatMap { $0.scalarText })
        case .string(let s)?:
            return LLMError(.apiError, status: status, message: s)
        default:
            break
        }
        if value["object"]?.stringValue == "error" || !isSuccess(status), let message = value["message"]?.stringValue {
            return LLMError(.apiError, status: status, message: message,
                            errorType: value["type"]?.stringValue, code: value["code"].flatMap { $0.scalarText })
        }
        if !isSuccess(status), let detail = value["detail"] {
            return LLMError(.apiError, status: status, message: detail.stringValue ?? detail.jsonText)
        }
        return nil
    }

    /// An integer from a JSON number (`12`, or `12.0` from a server that writes floats).
    static func int(_ value: JSONValue?) -> Int? {
        guard case .number(let literal)? = value else { return nil }
        if let i = Int(literal) { return i }
        guard let d = Double(literal), d.isFinite, d == d.rounded(), abs(d) < 9e15 else { return nil }
        return Int(d)
    }

    /// A short one-line piece of a body for a message.
    static func excerpt(_ text: String, limit: Int = 200) -> String {
        let collapsed = text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        return collapsed.count <= limit ? collapsed : String(collapsed.prefix(limit)) + "…"
    }

    /// The `<title>` of an HTML page (else its text without tags), short.
    static func htmlSummary(_ page: [UInt8]) -> String {
        func lower(_ b: UInt8) -> UInt8 { (0x41...0x5A).contains(b) ? b | 0x20 : b }
        func find(_ word: String, from: Int) -> Int? {
            let w = Array(word.utf8)
            guard page.count >= w.count, from <= page.count - w.count else { return nil }
            for i in from...(page.count - w.count) where zip(page[i..<(i + w.count)], w).allSatisfy({ lower($0) == $1 }) {
                return i
            }
            return nil
        }
        if let open = find("<title", from: 0), let tagEnd = find(">", from: open),
           let close = find("</title", from: tagEnd) {
            let title = excerpt(String(decoding: page[(tagEnd + 1)..<close], as: UTF8.self), limit: 120)
            if !title.isEmpty { return title }
        }
        var text = [UInt8]()
        var inTag = false
        for b in page {
            if b == UInt8(ascii: "<") { inTag = true; text.append(0x20) } else if b == UInt8(ascii: ">") { inTag = false } else if !inTag { text.append(b) }
        }
        return excerpt(String(decoding: text, as: UTF8.self), limit: 120)
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }
}
