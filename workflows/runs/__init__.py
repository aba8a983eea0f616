"""Operations on a run: start, signal, cancel, roll back, resume, recover, history, schedules."""
