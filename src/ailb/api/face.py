"""What every face (an inbound API on the pipeline) does around its own work: the call begun
and settled, refusals and failures answered in the face's error shape, a client that left
counted. The chat face writes the same out inline (its hot path), calling `refuse`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ailb.api.schemas import bad_json
from ailb.asgi import ClientDisconnected, Receive, Scope, Send, send_error
from ailb.errors import APIError
from ailb.pipeline.call import Call, Headers
from ailb.pipeline.core import Pipeline
from ailb.pipeline.exchange import overhead

ErrorSender = Callable[[Send, APIError, Headers], Awaitable[None]]


async def refuse(
    pipeline: Pipeline,
    send: Send,
    exc: APIError | RecursionError,
    call: Call,
    send_err: ErrorSender = send_error,
) -> None:
    # RecursionError: JSON nested just shallower than the decoder's limit, too deep for a
    # provider's translation or the encoder deeper in the stack (about 1,000 levels).
    e = exc if isinstance(exc, APIError) else bad_json(exc)
    pipeline.refused(call, e)
    await send_err(send, e, [*call.headers, overhead(call.ex)])


class Face:
    """An inbound API's POST endpoint: `handle` is the face's own work; around it the call is
    begun and settled, and refusals and failures answered (`api`: the name its requests are
    counted under; `send_err`: its error shape)."""

    def __init__(
        self,
        pipeline: Pipeline,
        max_body_bytes: int,
        api: str,
        send_err: ErrorSender = send_error,
    ) -> None:
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes
        self.api = api
        self.send_err = send_err

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One frame around the face's own work (a helper and a closure here cost the faces a
        # few percent of their requests/s).
        pipeline = self.pipeline
        call = pipeline.begin(scope)
        call.ex.api = self.api
        try:
            await self.handle(call, scope, receive, send)
        except (APIError, RecursionError) as exc:
            # Answered from another frame: a local naming the exception here would make a cycle
            # (its traceback holds this frame), keeping the request's body until the collector
            # runs.
            await refuse(pipeline, send, exc, call, self.send_err)
        except ClientDisconnected:
            call.ex.status, call.ex.error = 499, "client_disconnected"
        except Exception:
            pipeline.crashed(call)
            await self.send_err(
                send,
                APIError("The gateway failed to process the request."),
                [*call.headers, overhead(call.ex)],
            )
        finally:
            pipeline.end(call)

    async def handle(self, call: Call, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError
