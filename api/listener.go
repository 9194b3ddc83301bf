package api

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// JSONErrors wraps the API's listener so that the errors net/http answers
// itself, before a request reaches the handler (a header over its limit:
// 431; a malformed request: 400; an unknown transfer coding: 501; another
// HTTP version: 505), are JSON like every other error instead of plain
// text. Under TLS the listener sees only ciphertext: serve plain HTTP
// through it (behind a proxy, the usual set-up); with api.tls = "cert"
// those rare errors stay plain text.
func JSONErrors(ln net.Listener) net.Listener { return jsonErrorListener{ln} }

type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

type jsonErrorConn struct{ net.Conn }

// The headers net/http puts on the plain-text errors it writes itself.
const plainErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Write passes b on, unless it is one of net/http's own plain-text error
// responses, written whole in one call: the status line, then at once
// plainErrorHeaders, then a line of text. Those are rewritten as JSON with
// the same status. Nothing a handler writes has that shape: net/http puts
// a Date (and sorts Connection before Content-Type) in every response
// that goes through a handler.
func (c *jsonErrorConn) Write(b []byte) (int, error) {
	if out, ok := jsonError(b); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// CloseWrite keeps net/http's half-close working through the wrapper.
func (c *jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func jsonError(b []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(b, []byte("HTTP/1.1 "))
	if !ok {
		return nil, false
	}
	line, body, ok := bytes.Cut(rest, []byte(plainErrorHeaders))
	if !ok || len(line) < 4 || line[3] != ' ' || bytes.Contains(line, []byte("\r\n")) || bytes.Contains(body, []byte("\r\n")) {
		return nil, false
	}
	code, err := strconv.Atoi(string(line[:3]))
	if err != nil || code < 400 || code > 599 {
		return nil, false
	}
	// What net/http answers this way: 400, 431, 501 and 505; any other
	// code gets its status text in snake case.
	name := map[int]string{
		http.StatusBadRequest:                  "bad_request",
		http.StatusRequestHeaderFieldsTooLarge: "header_too_large",
		http.StatusNotImplemented:              "not_implemented",
		http.StatusHTTPVersionNotSupported:     "http_version_not_supported",
	}[code]
	if name == "" {
		name = strings.ReplaceAll(strings.ToLower(http.StatusText(code)), " ", "_")
	}
	detail := string(body)
	if code == http.StatusRequestHeaderFieldsTooLarge {
		detail = "the request line and headers are far too large; send only X-Api-User, X-Api-Key, Content-Type and the usual few"
	}
	js, _ := json.Marshal(errorBody{Error: name, Detail: detail})
	js = append(js, '\n')
	var out bytes.Buffer
	out.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
	out.WriteString("Content-Type: application/json\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(js)) + "\r\n\r\n")
	out.Write(js)
	return out.Bytes(), true
}
