"""fac's vocabulary: typed records and states that every layer may use (no I/O, no fac imports)."""

from __future__ import annotations

from dataclasses import dataclass

# --- the runtime registry ---
# Runtimes are found by name here, so lower layers (messages, roles, the CLI's choices) learn what
# a runtime is like without importing `supervisor.runtimes`; `runtimes.get(name)` loads the module.


@dataclass(frozen=True)
class RuntimeSpec:
    """A runtime's name, where its code lives, and the traits fac needs without loading it."""

    name: str
    module: str  # imported by runtimes.get(name)
    cls: str  # the class in `module` that implements runtimes.Runtime
    # How a message reaches the pane: False pastes `# ` comment lines (safe even at a shell prompt);
    # True pastes plain text and presses Enter (an agent's prompt box, where `#` means something).
    paste_plain: bool
    description: str


RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (
        RuntimeSpec(
            "command",
            "supervisor.runtimes.command",
            "CommandRuntime",
            paste_plain=False,
            description="any command line in the pane (scripted agents, tests, fac demo)",
        ),
        RuntimeSpec(
            "claude",
            "supervisor.runtimes.claude",
            "ClaudeRuntime",
            paste_plain=True,  # Claude Code reads a leading # as "remember this"
            description="Claude Code, reporting its state through hooks",
        ),
        RuntimeSpec(
            "anthropic",
            "supervisor.runtimes.anthropic",
            "AnthropicRuntime",
            paste_plain=False,
            description="fac's built-in agent on the Messages API",
        ),
    )
}
RUNTIME_NAMES: tuple[str, ...] = tuple(RUNTIMES)


def paste_plain(runtime: str) -> bool:
    """Whether runtime `runtime` takes messages as plain prompts (an unknown one gets comments)."""
    spec = RUNTIMES.get(runtime)
    return spec is not None and spec.paste_plain
