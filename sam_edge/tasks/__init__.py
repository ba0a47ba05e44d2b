"""The experiments: each task says its flags, checks and defaults without jax (`image_task`,
`text_task`, of type `task.Task`) and builds its problem inside the run (`image_problem`,
`text_problem`)."""
