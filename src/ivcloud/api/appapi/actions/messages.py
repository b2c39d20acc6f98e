"""The message centre (spec §2.1 last row; docs/app-api.md "Message centre"):
``AppGetMessages`` and ``AppDeleteMessage``.  Parameters are read by
:mod:`ivcloud.protocol.app_messages`; rules live in
:class:`ivcloud.services.messages.MessageService`."""

from __future__ import annotations

from typing import Any

from ivcloud.api.appapi.registry import ActionRegistry, Call
from ivcloud.protocol.app_messages import delete_msg_id, parse_query


def register(reg: ActionRegistry) -> None:
    @reg.action("AppGetMessages", "token")
    async def get_messages(call: Call) -> dict[str, Any]:
        query = parse_query(call.params)
        listover, msgs = await call.instance.messages.page(call.me, query)
        return {"Data": {"Listover": listover, "Msgs": msgs}}

    @reg.action("AppDeleteMessage", "token")
    async def delete_message(call: Call) -> dict[str, Any]:
        await call.instance.messages.delete(call.me, delete_msg_id(call.params))
        # DOC 1081/40795's example answers ``"Data": "OK"``.
        return {"Data": "OK"}
