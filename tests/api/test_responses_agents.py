"""openai-agents with its default model (the Responses API) runs an agent with a function tool
to completion through the gateway, on each provider format."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.api.test_responses import backend  # noqa: F401 - the parametrized fixture
from tests.fakes.server import Reply, ToolCall

agents = pytest.importorskip("agents")


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_agent_with_a_function_tool_runs_to_completion(
    backend,  # noqa: F811
    gateway_factory,
    streamed,
):
    gw = gateway_factory(backend.config, backend.env)
    seen: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"18C and sunny in {city}"

    backend.upstream.script(
        Reply(
            text="",
            tool_calls=[ToolCall(name="get_weather", arguments='{"city":"Paris"}', id="call_7")],
            finish_reason="tool_calls",
        ),
        Reply(text="It is 18C and sunny in Paris."),
    )

    async def run() -> str:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="sk-agent", max_retries=0)
        try:
            agent = agents.Agent(
                name="weather",
                instructions="Answer weather questions with the tool.",
                tools=[get_weather],
                model=backend.model,
            )
            config = agents.RunConfig(
                model_provider=agents.OpenAIProvider(openai_client=client),
                tracing_disabled=True,
            )
            if not streamed:
                result = await agents.Runner.run(agent, "Weather in Paris?", run_config=config)
                return str(result.final_output)
            run = agents.Runner.run_streamed(agent, "Weather in Paris?", run_config=config)
            async for _ in run.stream_events():
                pass
            return str(run.final_output)
        finally:
            await client.close()

    assert asyncio.run(run()) == "It is 18C and sunny in Paris."
    assert seen == ["Paris"]
    # The second request carried the tool's result back.
    assert "18C and sunny in Paris" in backend.sent_texts()
