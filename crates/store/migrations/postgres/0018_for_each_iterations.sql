-- Iterations of for_each tasks: task runs of the nested task, each naming the for_each task
-- run it belongs to, its place among the inputs and its input. Keep in step with the other
-- dialect's 0020_for_each_iterations.sql.
ALTER TABLE job_runs ADD COLUMN parent_run_id BIGINT;
ALTER TABLE job_runs ADD COLUMN iteration BIGINT;
ALTER TABLE job_runs ADD COLUMN iteration_input TEXT;
