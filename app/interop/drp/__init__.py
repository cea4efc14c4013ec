"""The Data Rights Protocol 1.0, covered-business side: authorized agents set up a pair-wise
token, exercise rights, read status and revoke; status callbacks go out through the outbox."""
