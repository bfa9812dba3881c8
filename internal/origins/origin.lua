-- mod_lua code of origins.Apache (origins.go). The handler answers with a
-- line naming the request and leaves the body to httpd, which reads it to
-- its end after the response (ap_discard_request_body, by the request's
-- framing, chunked or not); count_body, the request's input filter, sees
-- it on the way and notes its length for the access log.
function handle(r)
    r.notes["bodylen"] = "0"
    local saw = "apache|" .. (r.headers_in["X-Request-Id"] or "") .. "|" .. r.method .. "|" ..
        (r.headers_in["Host"] or "") .. "|" .. r.unparsed_uri
    r.headers_out["X-Saw"] = saw
    if r.uri:match("%.204$") then
        r.status = 204
        return apache2.OK
    end
    if r.uri:match("%.304$") then
        r.status = 304
        return apache2.OK
    end
    r.content_type = "text/plain"
    r:puts(saw .. "\n")
    return apache2.OK
end

function count_body(r)
    local n = 0
    coroutine.yield()
    while bucket do
        n = n + #bucket
        r.notes["bodylen"] = tostring(n)
        coroutine.yield(bucket)
    end
end
