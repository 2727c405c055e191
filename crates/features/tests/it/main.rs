mod online;
mod pit_end_to_end;
