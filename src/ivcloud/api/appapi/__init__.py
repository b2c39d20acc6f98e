"""The Tencent-compatible App API edge: ``appapi`` (signed) and ``tokenapi`` (AccessToken)
calls, each answered with HTTP 200 and the ``{code, msg, data}`` envelope (spec §1)."""
