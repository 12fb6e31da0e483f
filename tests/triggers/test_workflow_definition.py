"""Declaring workflows: collection order, names, validation at import time, inheritance."""

from __future__ import annotations

import types

import pytest

from dataflow import Workflow, WorkflowError, cronjob, startup
from dataflow.triggers.cronjob import CronSpec
from dataflow.triggers.startup import StartupSpec
from dataflow.triggers.workflow import implicit_workflow


def names(cls: type[Workflow]) -> list[str]:
    return [t.name for t in cls.__triggers__]


def test_triggers_are_collected_in_declaration_order_with_method_names() -> None:
    class Conrad(Workflow):
        @startup
        def initial_setup(self) -> None: ...

        @startup(name="warm_cache")
        async def warm(self) -> None: ...

        @cronjob("*/15 * * * *", name="etl_job")
        def etl(self) -> None: ...

    assert names(Conrad) == ["initial_setup", "warm_cache", "etl_job"]
    assert [type(t.spec) for t in Conrad.__triggers__] == [StartupSpec, StartupSpec, CronSpec]
    assert Conrad.workflow_name == "test_workflow_definition"  # its file's name


def test_decorators_return_the_function_unchanged() -> None:
    def job() -> str:
        return "ran"

    assert cronjob("* * * * *")(job) is job
    assert job() == "ran"


def test_duplicate_trigger_names_are_rejected_naming_class_and_methods() -> None:
    with pytest.raises(WorkflowError, match=r"Dup\.b: trigger name 'x' is already used by Dup\.a"):

        class Dup(Workflow):
            @startup(name="x")
            def a(self) -> None: ...

            @cronjob("* * * * *", name="x")
            def b(self) -> None: ...


def test_a_second_trigger_decorator_on_one_handler_is_rejected() -> None:
    with pytest.raises(WorkflowError, match=r"already decorated with @cronjob"):

        class Twice(Workflow):
            @cronjob("0 * * * *")
            @cronjob("30 * * * *")
            def job(self) -> None: ...


@pytest.mark.parametrize(
    "make",
    [
        lambda: cronjob("* * * * *")(lambda self, extra: None),
        lambda: startup(lambda self, a, b: None),
    ],
)
def test_a_handler_that_cannot_take_what_its_trigger_passes_is_rejected(make: object) -> None:
    assert callable(make)
    with pytest.raises(WorkflowError, match=r"Bad\.<lambda>: @\w+ handler must accept no argu"):
        type("Bad", (Workflow,), {"job": make()})


def test_bare_cronjob_without_expression_is_a_clear_error() -> None:
    with pytest.raises(WorkflowError, match=r"@cronjob needs a cron expression"):
        cronjob(lambda: None)  # type: ignore[arg-type]


def test_invalid_policy_values_fail_at_import() -> None:
    with pytest.raises(WorkflowError, match=r"overlap='sometimes' is not valid"):
        cronjob("* * * * *", overlap="sometimes")
    with pytest.raises(WorkflowError, match=r"jitter=-1 must not be negative"):
        cronjob("* * * * *", jitter=-1)


def test_subclass_inherits_overrides_and_removes_triggers() -> None:
    class Base(Workflow):
        @startup
        def setup(self) -> None: ...

        @cronjob("0 * * * *")
        def hourly(self) -> None: ...

        @cronjob("0 0 * * *")
        def daily(self) -> None: ...

    class Child(Base):
        @cronjob("30 * * * *")
        def hourly(self) -> None: ...

        def daily(self) -> None: ...  # plain override: no longer a trigger

    assert names(Child) == ["setup", "hourly"]
    hourly = Child.__triggers__[1].spec
    assert isinstance(hourly, CronSpec) and hourly.schedule.expression == "30 * * * *"
    assert names(Base) == ["setup", "hourly", "daily"]


def test_module_level_functions_form_an_implicit_workflow() -> None:
    module = types.ModuleType("workflows.seedstyle")

    @startup
    def initial_setup() -> None: ...

    @cronjob("*/15 * * * *", name="etl_job")
    def etl() -> None: ...

    for func in (initial_setup, etl):
        func.__module__ = module.__name__
        setattr(module, func.__name__, func)
    workflow = implicit_workflow(module)
    assert workflow is not None
    assert workflow.workflow_name == "seedstyle"
    assert names(workflow) == ["initial_setup", "etl_job"]
    assert [t.handler for t in workflow().triggers()] == [initial_setup, etl]


def test_seed_import_paths_are_public() -> None:
    from dataflow.triggers.cronjob import cronjob as c
    from dataflow.triggers.startup import startup as s

    assert c is cronjob and s is startup


def test_public_names_are_listed_once_and_all_import() -> None:
    """`__all__` is the lazy map's names, each listed once; every one imports."""
    import dataflow

    listed = [name for names in dataflow._WHERE.values() for name in names]
    assert dataflow.__all__ == sorted(listed) == sorted(set(listed))
    for name in dataflow.__all__:
        assert getattr(dataflow, name) is not None
