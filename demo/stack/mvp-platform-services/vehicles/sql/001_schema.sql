-- Platform vehicles catalogue (mvp-platform-vehicles-db, database "vehicles")
CREATE TABLE IF NOT EXISTS vehicle_models (
  id    serial PRIMARY KEY,
  year  int  NOT NULL,
  make  text NOT NULL,
  model text NOT NULL,
  UNIQUE (year, make, model)
);
CREATE INDEX IF NOT EXISTS vehicle_models_year_make_idx ON vehicle_models (year, make);
