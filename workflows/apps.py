from django.apps import AppConfig


class WorkflowsConfig(AppConfig):
    name = "workflows"
    label = "data_exchange_workflows"
    verbose_name = "Data exchange workflows"
