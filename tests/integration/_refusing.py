"""A local endpoint that refuses every request's credentials, as SQS and Lambda do.

SQS (JSON protocol) answers 400 ``UnrecognizedClientException`` with the legacy code
``InvalidClientTokenId`` in ``x-amzn-query-error`` (the code botocore reports); Lambda answers
403 with ``x-amzn-ErrorType: UnrecognizedClientException``. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

from aiohttp import web

from asyncloop.testing._loopback import serve_on_loopback

__all__ = ("refusing_server",)


async def refusing_server() -> tuple[web.AppRunner, str]:
    """Start the endpoint; returns its runner (the caller cleans it up) and its URL."""

    # What SQS (JSON protocol) and Lambda answer to an unknown access key
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if "X-Amz-Target" in request.headers:
            return web.json_response(
                {
                    "__type": "com.amazon.coral.service#UnrecognizedClientException",
                    "message": "The security token included in the request is invalid.",
                },
                status=400,
                headers={"x-amzn-query-error": "InvalidClientTokenId;Sender"},
                content_type="application/x-amz-json-1.0",
            )
        return web.json_response(
            {"message": "The security token included in the request is invalid."},
            status=403,
            headers={"x-amzn-ErrorType": "UnrecognizedClientException:http://internal"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return await serve_on_loopback(app)
