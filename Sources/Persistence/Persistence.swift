// Persistence: featbit.db (issue: durable featbit.db)
