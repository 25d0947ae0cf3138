"""Airflow DAGs: thin schedules that call the recqa CLI; no business logic here."""
